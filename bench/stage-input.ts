// Stage input check bench: what the finite check a stage runs on every
// FORWARD (firstNonFinite, src/pipeline/finite.ts) costs, against what the
// step itself costs: one Qwen3-8B-shaped decoder layer (hidden 4096, random
// weights) through the real LayerRange path, for a decode step and a
// prefill. A stage runs at least one layer per step, so the ratio printed
// is the check's largest share of a step. Prints human lines, then one JSON
// object as the last line.
//
//   npm run bench -- stage-input [--prefill 128] [--steps 8] [--workers 0] [--backend wasm]
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/model/backend.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { MapWeightSource } from '../src/model/weight-source.ts'
import { firstNonFinite } from '../src/pipeline/finite.ts'
import { randomLayer } from './lib/random-layer.ts'
import type { BackendPreference } from '../src/model/backend.ts'

const { values: opts } = parseArgs({
  options: {
    workers: { type: 'string', default: '0' },
    prefill: { type: 'string', default: '128' },
    steps: { type: 'string', default: '8' },
    backend: { type: 'string', default: 'wasm' }
  }
})
const WORKERS = Number(opts.workers)
const PREFILL = Number(opts.prefill)
const STEPS = Number(opts.steps)

const CONFIG = parseQwen3Config({
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 12288,
  num_hidden_layers: 1,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960
})
const h = CONFIG.hiddenSize

function say (line: string): void {
  process.stdout.write(line + '\n')
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

function hiddenStates (rows: number): Float32Array {
  const x = new Float32Array(rows * h)
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.37) * 0.5
  }
  return x
}

/** Median ms of the check over an all-finite [rows, h] tensor (the full scan, its worst case). */
function checkMs (rows: number): number {
  const x = hiddenStates(rows)
  const reps = Math.max(5, Math.min(20_000, Math.floor(2e8 / x.length)))
  const runs: number[] = []
  let sink = 0
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now()
    for (let i = 0; i < reps; i++) {
      sink += firstNonFinite(x)
    }
    runs.push((performance.now() - t0) / reps)
  }
  if (sink !== -7 * reps) {
    throw new Error('a finite tensor was reported non-finite')
  }
  return median(runs)
}

say(`machine: ${availableParallelism()} cores, load average ${loadavg()[0].toFixed(2)}`)
const sizes = [1, 32, PREFILL, 4096]
const check = Object.fromEntries(sizes.map(rows => [rows, checkMs(rows)]))
for (const rows of sizes) {
  const ms = check[rows]
  say(`check [${rows}, ${h}] (${(rows * h * 4 / 2 ** 20).toFixed(rows < 64 ? 3 : 0)} MiB): ${ms < 0.01 ? `${(ms * 1000).toFixed(2)} µs` : `${ms.toFixed(3)} ms`} (${(rows * h * 4 / ms / 1e6).toFixed(1)} GB/s)`)
}

const sel = await selectBackend(opts.backend as BackendPreference)
const { tensors } = randomLayer(CONFIG)
const layer = await LayerRange.load(CONFIG, new MapWeightSource(tensors, 'random'), { start: 0, end: 1, workers: WORKERS === 0 ? undefined : WORKERS })
tensors.clear()
say(`one Qwen3-8B-shaped layer on ${sel.name}, ${WORKERS === 0 ? 'main thread' : `${WORKERS} worker threads`}`)
const session = layer.createSession()
await layer.forwardData(session, hiddenStates(8))
await layer.forwardData(session, hiddenStates(1))
session.truncate(0)

let t0 = performance.now()
await layer.forwardData(session, hiddenStates(PREFILL))
const prefillMs = performance.now() - t0
const decode: number[] = []
for (let i = 0; i < STEPS; i++) {
  t0 = performance.now()
  await layer.forwardData(session, hiddenStates(1))
  decode.push(performance.now() - t0)
}
const decodeMs = median(decode)
session.dispose()
layer.dispose()
say(`decode step (1 layer): ${decodeMs.toFixed(2)} ms; check ${(check[1] * 1000).toFixed(2)} µs = ${(100 * check[1] / decodeMs).toFixed(4)} % of it`)
say(`prefill of ${PREFILL} (1 layer): ${prefillMs.toFixed(0)} ms; check ${check[PREFILL].toFixed(3)} ms = ${(100 * check[PREFILL] / prefillMs).toFixed(4)} % of it`)
say(JSON.stringify({ hidden: h, checkMs: check, decodeMs, prefill: PREFILL, prefillMs, decodeShare: check[1] / decodeMs, prefillShare: check[PREFILL] / prefillMs }))
