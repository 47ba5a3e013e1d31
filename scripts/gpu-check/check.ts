// The GPU check (issue 14): one Qwen3-8B-shaped decoder layer (hidden 4096,
// intermediate 12288, 32/8 heads, head_dim 128, random weights from the
// benches' fixed stream) through blyd's own LayerRange, on wasm and on
// webgpu with the same weights and inputs: the max abs difference of the
// outputs for a prefill and a decode step; then LAYERS such layers (36 = the
// Qwen3-8B depth, each its own copy on the device) on webgpu: prefill tokens/s
// and decode ms/token. Prints one line per figure, then one JSON line.
//
//   node scripts/gpu-check/check.ts [--layers 36] [--prefill 128] [--steps 16]
//        [--diff-prefill 32] [--quick] [--bandwidth-gbs N]
//
// --quick (for a software adapter, where a decode step of one layer takes
// seconds): 1 layer, prefill 8, 2 decode steps, diff prefill 8.
// --bandwidth-gbs: the device's memory bandwidth as its datasheet gives it
// (WebGPU does not report it), for the decode floor = weight bytes / bandwidth.
// Runs from the repo (Node type stripping) or bundled (scripts/gpu-bundle.sh).
import { parseArgs } from 'node:util'
import { randomLayer } from '../../bench/lib/random-layer.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { describeAdapter } from '../../src/model/webgpu-adapter.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { WeightSource } from '../../src/model/weight-source.ts'

const { values: opts } = parseArgs({
  options: {
    layers: { type: 'string' },
    prefill: { type: 'string' },
    steps: { type: 'string' },
    'diff-prefill': { type: 'string' },
    quick: { type: 'boolean', default: false },
    'bandwidth-gbs': { type: 'string' }
  }
})

const quick = opts.quick === true
const LAYERS = Number(opts.layers ?? (quick ? 1 : 36))
const PREFILL = Number(opts.prefill ?? (quick ? 8 : 128))
const STEPS = Number(opts.steps ?? (quick ? 2 : 16))
const DIFF_PREFILL = Number(opts['diff-prefill'] ?? (quick ? 8 : 32))
const BANDWIDTH_GBS = opts['bandwidth-gbs'] != null ? Number(opts['bandwidth-gbs']) : undefined
for (const [k, v] of Object.entries({ LAYERS, PREFILL, STEPS, DIFF_PREFILL })) {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new Error(`${k.toLowerCase()} must be a positive integer`)
  }
}

const shape = {
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 12288,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960
}

function say (line: string): void {
  process.stdout.write(line + '\n')
}

function fmt (x: number, digits = 2): string {
  return x.toFixed(digits)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** hidden states [t, h], deterministic, |x| <= 2 */
function hiddenOf (t: number, h: number, salt: number): Float32Array {
  const x = new Float32Array(t * h)
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.37 + salt) * 1.5 + Math.cos(i * 0.011) * 0.5
  }
  return x
}

function maxAbs (a: Float32Array): number {
  let m = 0
  for (const v of a) {
    m = Math.max(m, Math.abs(v))
  }
  return m
}

function maxAbsDiff (a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]))
  }
  return m
}

/** Every layer's tensors are layer 0's (one copy in host memory; each layer uploads its own). */
function sameLayerSource (tensors: Map<string, RawTensor>): WeightSource {
  return {
    label: 'random 8B-shaped layer',
    get: async name => tensors.get(name.replace(/^model\.layers\.\d+\./, 'model.layers.0.'))
  }
}

/** prefill of DIFF_PREFILL positions, then one decode step, on the backend now active */
async function oneLayerOutputs (source: WeightSource): Promise<{ prefill: Float32Array, decode: Float32Array }> {
  const config = parseQwen3Config({ ...shape, num_hidden_layers: 1 })
  const layer = await LayerRange.load(config, source, { start: 0, end: 1 })
  try {
    const s = layer.createSession()
    const prefill = await layer.forwardData(s, hiddenOf(DIFF_PREFILL, config.hiddenSize, 0))
    const decode = await layer.forwardData(s, hiddenOf(1, config.hiddenSize, 1))
    s.dispose()
    return { prefill, decode }
  } finally {
    await layer.close()
  }
}

const started = performance.now()
const { tensors, params } = randomLayer(parseQwen3Config({ ...shape, num_hidden_layers: 1 }))
const source = sameLayerSource(tensors)
const layerBytes = params * 4

await selectBackend('wasm')
const ref = await oneLayerOutputs(source)

const sel = await selectBackend('webgpu', { allowSoftwareAdapter: true })
if (sel.adapter == null) {
  throw new Error('webgpu started without an adapter')
}
say(`adapter: ${describeAdapter(sel.adapter)}; ${sel.adapter.description}`)
say(`layer: Qwen3-8B shape (hidden 4096, intermediate 12288, 32/8 heads, head_dim 128), ${fmt(params / 1e6, 1)} M params, ${fmt(layerBytes / 1e6, 1)} MB float32`)
const got = await oneLayerOutputs(source)
const diffPrefill = maxAbsDiff(got.prefill, ref.prefill)
const diffDecode = maxAbsDiff(got.decode, ref.decode)
say(`max abs diff webgpu vs wasm, prefill ${DIFF_PREFILL} positions: ${diffPrefill.toExponential(2)} (max |y| ${fmt(maxAbs(ref.prefill))})`)
say(`max abs diff webgpu vs wasm, decode step: ${diffDecode.toExponential(2)} (max |y| ${fmt(maxAbs(ref.decode))})`)

const config = parseQwen3Config({ ...shape, num_hidden_layers: LAYERS })
let t0 = performance.now()
const range = await LayerRange.load(config, source, { start: 0, end: LAYERS })
tensors.clear()
const loadS = (performance.now() - t0) / 1000
say(`${LAYERS} layers loaded on the device in ${fmt(loadS, 1)} s (${fmt(LAYERS * layerBytes / 1e9, 2)} GB float32)`)

const session = range.createSession()
// warm-up: pipelines compile on first use for each shape (prefill length, then a decode step)
await range.forwardData(session, hiddenOf(PREFILL, config.hiddenSize, 2))
await range.forwardData(session, hiddenOf(1, config.hiddenSize, 3))
const prefillRuns: number[] = []
for (let i = 0; i < 2; i++) {
  session.truncate(0)
  const x = hiddenOf(PREFILL, config.hiddenSize, 4 + i)
  t0 = performance.now()
  await range.forwardData(session, x)
  prefillRuns.push(performance.now() - t0)
}
const prefillMs = Math.min(...prefillRuns)
const decodeRuns: number[] = []
for (let i = 0; i < STEPS; i++) {
  const x = hiddenOf(1, config.hiddenSize, 10 + i)
  t0 = performance.now()
  await range.forwardData(session, x)
  decodeRuns.push(performance.now() - t0)
}
session.dispose()
await range.close()
const decodeMs = median(decodeRuns)
const prefillTokS = PREFILL / (prefillMs / 1000)
say(`${LAYERS} layers prefill ${PREFILL} positions (best of 2): ${fmt(prefillMs, 1)} ms = ${fmt(prefillTokS, 1)} tokens/s`)
say(`${LAYERS} layers decode (context ${PREFILL}..${PREFILL + STEPS}, median of ${STEPS}): ${fmt(decodeMs, 2)} ms/token (best ${fmt(Math.min(...decodeRuns), 2)})`)
let floorMs: number | null = null
if (BANDWIDTH_GBS != null && BANDWIDTH_GBS > 0) {
  floorMs = LAYERS * layerBytes / (BANDWIDTH_GBS * 1e9) * 1000
  say(`decode floor ${fmt(floorMs, 2)} ms/token = ${fmt(LAYERS * layerBytes / 1e9, 2)} GB / ${BANDWIDTH_GBS} GB/s (--bandwidth-gbs, the datasheet figure) -> ${fmt(decodeMs / floorMs, 2)}x floor`)
}
say(`total ${fmt((performance.now() - started) / 1000, 1)} s`)
process.stdout.write(JSON.stringify({
  adapter: sel.adapter,
  layers: LAYERS,
  layerBytes,
  diffPrefill,
  diffDecode,
  diffPrefillPositions: DIFF_PREFILL,
  prefillPositions: PREFILL,
  prefillMs: Number(fmt(prefillMs, 1)),
  prefillTokensPerS: Number(fmt(prefillTokS, 2)),
  decodeMs: Number(fmt(decodeMs, 3)),
  decodeSteps: STEPS,
  decodeFloorMs: floorMs != null ? Number(fmt(floorMs, 3)) : null,
  bandwidthGBs: BANDWIDTH_GBS ?? null
}) + '\n')
// Dawn keeps its device's threads alive; the check is done
process.exit(0)
