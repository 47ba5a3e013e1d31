// Workers bench: where tensor-parallel worker threads start to pay. For each
// layer shape (the tiny test fixture up to Qwen3-8B's), one decoder layer
// with random weights runs through the real LayerRange code path on the main
// thread and on N worker threads; prints the decode ms/step (median, context
// --context..) and the prefill time of --context positions for both, then one
// JSON object as the last line. The `workers: auto` rule in
// src/model/workers.ts comes from these figures (docs/inference-performance.md).
//
//   npm run bench -- workers [--workers N] [--hidden 32,256,512,1024,2048,4096] [--steps 24] [--context 64] [--backend wasm]
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/model/backend.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { MapWeightSource } from '../src/model/weight-source.ts'
import { randomLayer } from './lib/random-layer.ts'
import type { BackendPreference } from '../src/model/backend.ts'
import type { Qwen3Config } from '../src/model/qwen3/config.ts'

const { values: opts } = parseArgs({
  options: {
    workers: { type: 'string', default: String(availableParallelism()) },
    hidden: { type: 'string', default: '32,256,512,1024,2048,4096' },
    steps: { type: 'string', default: '24' },
    context: { type: 'string', default: '64' },
    backend: { type: 'string', default: 'wasm' }
  }
})

const WORKERS = Number(opts.workers)
const STEPS = Number(opts.steps)
const CONTEXT = Number(opts.context)

/** Qwen3-like shapes by hidden size (32: the test fixture; 1024/2048/4096: Qwen3-0.6B/1.7B/8B). */
function shape (h: number): Qwen3Config {
  const known: Record<number, [number, number, number, number]> = {
    // [heads, kv heads, head_dim, intermediate]
    32: [4, 2, 16, 64],
    256: [4, 2, 64, 768],
    512: [8, 4, 64, 1536],
    1024: [16, 8, 128, 3072],
    2048: [16, 8, 128, 6144],
    4096: [32, 8, 128, 12288]
  }
  const k = known[h]
  if (k == null) {
    throw new Error(`no shape for hidden ${h}; known: ${Object.keys(known).join(', ')}`)
  }
  return parseQwen3Config({
    model_type: 'qwen3',
    vocab_size: 1024,
    hidden_size: h,
    intermediate_size: k[3],
    num_hidden_layers: 1,
    num_attention_heads: k[0],
    num_key_value_heads: k[1],
    head_dim: k[2],
    max_position_embeddings: 4096
  })
}

function hiddenStates (t: number, h: number): Float32Array {
  const x = new Float32Array(t * h)
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.37) * 0.5
  }
  return x
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

async function run (c: Qwen3Config, workers: number): Promise<{ decodeMs: number, prefillMs: number }> {
  const layer = await LayerRange.load(c, new MapWeightSource(randomLayer(c).tensors), { start: 0, end: 1, workers })
  const h = c.hiddenSize
  const session = layer.createSession()
  try {
    await layer.forwardData(session, hiddenStates(8, h))
    await layer.forwardData(session, hiddenStates(1, h))
    const prefill: number[] = []
    for (let i = 0; i < 2; i++) {
      session.truncate(0)
      const t0 = performance.now()
      await layer.forwardData(session, hiddenStates(CONTEXT, h))
      prefill.push(performance.now() - t0)
    }
    const decode: number[] = []
    for (let i = 0; i < STEPS; i++) {
      const x = hiddenStates(1, h)
      const t0 = performance.now()
      await layer.forwardData(session, x)
      decode.push(performance.now() - t0)
    }
    return { decodeMs: median(decode), prefillMs: Math.min(...prefill) }
  } finally {
    session.dispose()
    await layer.close()
  }
}

const say = (line: string): void => { process.stdout.write(line + '\n') }
const sel = await selectBackend(opts.backend as BackendPreference)
const load0 = loadavg()[0]
say(`backend ${sel.name}, ${availableParallelism()} cores, load average ${load0.toFixed(2)}; main thread vs ${WORKERS} workers, decode median of ${STEPS} at context ${CONTEXT}..${CONTEXT + STEPS}, prefill ${CONTEXT} positions best of 2`)
const rows = []
for (const h of opts.hidden.split(',').map(Number)) {
  const c = shape(h)
  const main = await run(c, 0)
  const pool = await run(c, WORKERS)
  const row = { hidden: h, intermediate: c.intermediateSize, mainDecodeMs: Number(main.decodeMs.toFixed(3)), workersDecodeMs: Number(pool.decodeMs.toFixed(3)), mainPrefillMs: Number(main.prefillMs.toFixed(1)), workersPrefillMs: Number(pool.prefillMs.toFixed(1)) }
  rows.push(row)
  say(`hidden ${String(h).padStart(4)}: decode ${row.mainDecodeMs.toFixed(2)} -> ${row.workersDecodeMs.toFixed(2)} ms (x${(main.decodeMs / pool.decodeMs).toFixed(2)}), prefill ${row.mainPrefillMs} -> ${row.workersPrefillMs} ms (x${(main.prefillMs / pool.prefillMs).toFixed(2)})`)
}
say(JSON.stringify({ backend: sel.name, workers: WORKERS, cores: availableParallelism(), loadAverage: [Number(load0.toFixed(2)), Number(loadavg()[0].toFixed(2))], rows }))
