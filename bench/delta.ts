// Delta bench: the four delta codecs on one Qwen3-8B-shaped decoder layer
// (hidden 4096, intermediate 12288, 32 x 128 query heads, 8 kv heads;
// 218 M params; weights from bench/lib/random-layer.ts) with a realistic
// fine-tuning delta (bench/lib/realistic-delta.ts says how it is made and
// why), then the eval-loss gain each lossy codec keeps on a small model that
// really improved (bench/lib/delta-gain.ts).
//
// Per codec: payload bytes and compression ratio against the f32 bytes of
// the changed params, reconstruction error against the exact f32 difference
// (max abs, relative Frobenius), encode time, decode+apply time (best of
// --runs; zstd, the canonical checks and the fixed-order apply, one thread).
// Baselines measured in the same run: the f32 bytes (ratio 1), a plain copy
// of the layer's f32 weights (the floor of any dense apply), the lossless
// delta's loss gain. Human lines, then one JSON object as the last line.
//
//   npm run bench -- delta [--config 8b|0.6b] [--density 0.01] [--rank 16] [--runs 3]
//                          [--rel-rms 0.05] [--share 0.7] [--tiny-rel-rms 0.5] [--windows 64] [--length 64] [--no-gain]
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { applyDeltaInPlace } from '../src/learning/delta-apply.ts'
import { encodeDelta } from '../src/learning/delta-encode.ts'
import { toF32Tensors } from '../src/learning/f32-tensors.ts'
import { topKIndices } from '../src/learning/top-k.ts'
import { weightDiff } from '../src/learning/weight-diff.ts'
import { selectBackend } from '../src/model/backend.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { compressDeltaBody, decodeDeltaPayload, encodeDeltaBody } from '../src/protocols/delta.ts'
import { codecLoss, gainSetup, iteratedLoss } from './lib/delta-gain.ts'
import { randomLayer } from './lib/random-layer.ts'
import { REALISTIC_DELTA_DEFAULTS, defaultDeltaRank, realisticDelta, rms } from './lib/realistic-delta.ts'
import type { DeltaEncodeOptions } from '../src/learning/delta-encode.ts'
import type { F32Tensor, F32Tensors } from '../src/learning/f32-tensors.ts'
import type { DeltaCodec } from '../src/protocols/delta.ts'

const { values: opts } = parseArgs({
  options: {
    config: { type: 'string', default: '8b' },
    density: { type: 'string', default: '0.01' },
    rank: { type: 'string', default: '16' },
    runs: { type: 'string', default: '3' },
    'rel-rms': { type: 'string', default: '0.05' },
    share: { type: 'string', default: String(REALISTIC_DELTA_DEFAULTS.lowRankShare) },
    'tiny-rel-rms': { type: 'string', default: '0.5' },
    windows: { type: 'string', default: '64' },
    length: { type: 'string', default: '64' },
    'no-gain': { type: 'boolean', default: false }
  }
})

const CONFIGS = {
  '8b': { hidden_size: 4096, intermediate_size: 12288, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128 },
  '0.6b': { hidden_size: 1024, intermediate_size: 3072, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128 }
} as const
const shape = CONFIGS[opts.config as keyof typeof CONFIGS]
if (shape == null) {
  throw new Error(`--config must be one of ${Object.keys(CONFIGS).join(', ')}`)
}
const CONFIG = parseQwen3Config({ model_type: 'qwen3', vocab_size: 151936, num_hidden_layers: 1, max_position_embeddings: 40960, ...shape })
const DENSITY = Number(opts.density)
const RANK = Number(opts.rank)
const RUNS = Number(opts.runs)
const DELTA = { relRms: Number(opts['rel-rms']), lowRankShare: Number(opts.share) }
const SEED = 1

function say (line: string): void {
  process.stdout.write(line + '\n')
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits)
const sci = (x: number): string => x.toExponential(2)
const round = (x: number, digits = 4): number => Number(x.toPrecision(digits))

function best<T> (runs: number, fn: () => T): { ms: number, value: T } {
  let ms = Infinity
  let value: T | undefined
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    value = fn()
    ms = Math.min(ms, performance.now() - t0)
  }
  return { ms, value: value as T }
}

function copyInto (dst: F32Tensors, src: F32Tensors): void {
  for (const [name, t] of src) {
    (dst.get(name) as F32Tensor).values.set(t.values)
  }
}

const load0 = loadavg()[0]
say(`machine: ${availableParallelism()} cores, load average ${fmt(load0, 2)}${load0 > availableParallelism() * 0.5 ? ' (busy: timings are skewed by other work)' : ''}`)

// ---------------------------------------------------------------- the layer and its delta
let t0 = performance.now()
const layer = randomLayer(CONFIG)
const base = toF32Tensors(layer.tensors)
const layerBytes = layer.params * 4
say(`layer (${opts.config}): ${fmt(layer.params / 1e6)} M params, ${fmt(layerBytes / 1e6)} MB float32 (${fmt((performance.now() - t0) / 1000, 1)} s)`)

t0 = performance.now()
const diffs: F32Tensors = new Map()
let inexact = 0
let changedParams = 0
let seedIndex = 0
for (const name of [...base.keys()].sort()) {
  const w = base.get(name) as F32Tensor
  // the fine-tuned checkpoint's tensor: fround(w + delta); then the exact difference as propose computes it
  const c = realisticDelta(w.shape, rms(w.values), DELTA, SEED * 1000 + seedIndex++)
  for (let i = 0; i < c.length; i++) {
    c[i] = w.values[i] + c[i]
  }
  const d = weightDiff(new Map([[name, { dtype: 'F32', shape: w.shape, data: new Uint8Array(c.buffer) }]]), new Map([[name, w]]))
  diffs.set(name, d.diffs.get(name) as F32Tensor)
  inexact += d.inexact
  changedParams += d.changedParams
}
// share of the delta's energy in the top 1% entries of each tensor (a statistic of its tails)
let topEnergy = 0
let totalEnergy = 0
for (const t of diffs.values()) {
  const top = topKIndices(t.values, Math.ceil(t.values.length / 100))
  for (const i of top) {
    topEnergy += t.values[i] * t.values[i]
  }
  for (let i = 0; i < t.values.length; i++) {
    totalEnergy += t.values[i] * t.values[i]
  }
}
const topShare = topEnergy / totalEnergy
say(`delta: rms ${DELTA.relRms} x weight rms, ${fmt(DELTA.lowRankShare * 100, 0)}% of its energy rank-${defaultDeltaRank(4096, 4096)} (singular values ~ 1/k), the rest Student-t(3) x per-column log-normal scale; top 1% entries of each tensor hold ${fmt(topShare * 100)}% of the energy (${fmt((performance.now() - t0) / 1000)} s)`)
say(`exact difference: ${changedParams} changed params; ${inexact} elements (${sci(inexact / changedParams)}) not exactly representable as an f32 difference`)

// ---------------------------------------------------------------- baselines
const work: F32Tensors = new Map([...base].map(([name, t]) => [name, { shape: t.shape, values: new Float32Array(t.values.length) }]))
const memcpy = best(RUNS, () => { copyInto(work, base) })
say(`baseline: plain copy of the layer's f32 weights ${fmt(memcpy.ms)} ms (${fmt(layerBytes / 1e6 / memcpy.ms)} GB/s)`)

// ---------------------------------------------------------------- codecs on the layer
interface LayerFigures {
  bytes: number
  ratio: number
  maxAbsError: number
  relFrobError: number
  encodeMs: number
  decodeMs: number
  applyMs: number
  decodeApplyMs: number
}

function measure (options: DeltaEncodeOptions, runs: number): LayerFigures {
  const e0 = performance.now()
  const enc = encodeDelta(diffs, options)
  const payload = compressDeltaBody(encodeDeltaBody(enc.delta as NonNullable<typeof enc.delta>))
  const encodeMs = performance.now() - e0
  let decodeMs = Infinity
  let applyMs = Infinity
  let decodeApplyMs = Infinity
  for (let r = 0; r < runs; r++) {
    copyInto(work, base)
    const d0 = performance.now()
    const { delta } = decodeDeltaPayload(payload, { codec: options.codec })
    const d1 = performance.now()
    applyDeltaInPlace(work, delta)
    const d2 = performance.now()
    decodeMs = Math.min(decodeMs, d1 - d0)
    applyMs = Math.min(applyMs, d2 - d1)
    decodeApplyMs = Math.min(decodeApplyMs, d2 - d0)
  }
  return {
    bytes: payload.length,
    ratio: 4 * enc.params / payload.length,
    maxAbsError: enc.maxAbsError,
    relFrobError: enc.relFrobError,
    encodeMs,
    decodeMs,
    applyMs,
    decodeApplyMs
  }
}

const CODECS: Array<{ codec: DeltaCodec, options: Omit<DeltaEncodeOptions, 'codec'>, label: string }> = [
  { codec: 'f32', options: {}, label: 'f32' },
  { codec: 'int8', options: {}, label: 'int8' },
  { codec: 'sparse', options: { density: DENSITY }, label: `sparse d=${DENSITY}` },
  { codec: 'lowrank', options: { rank: RANK }, label: `lowrank r=${RANK}` }
]
const layerFigures: Record<string, LayerFigures> = {}
say('')
say('codec            bytes        ratio   max abs err  rel frob err  encode ms  decode ms  apply ms  decode+apply ms')
for (const c of CODECS) {
  const f = measure({ codec: c.codec, ...c.options }, c.codec === 'lowrank' ? 1 : RUNS)
  layerFigures[c.codec] = f
  say(`${c.label.padEnd(15)}  ${String(f.bytes).padStart(11)}  ${fmt(f.ratio, 2).padStart(7)}x  ${sci(f.maxAbsError).padStart(11)}  ${sci(f.relFrobError).padStart(12)}  ${fmt(f.encodeMs, 0).padStart(9)}  ${fmt(f.decodeMs, 0).padStart(9)}  ${fmt(f.applyMs, 0).padStart(8)}  ${fmt(f.decodeApplyMs, 0).padStart(15)}`)
}

const SWEEP = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
const sparseSweep: Array<{ density: number, ratio: number, relFrobError: number }> = []
say('')
say('sparse density sweep on the layer (ratio, rel frob err):')
for (const density of SWEEP) {
  const enc = encodeDelta(diffs, { codec: 'sparse', density })
  const bytes = compressDeltaBody(encodeDeltaBody(enc.delta as NonNullable<typeof enc.delta>)).length
  sparseSweep.push({ density, ratio: round(4 * enc.params / bytes), relFrobError: round(enc.relFrobError) })
  say(`  density ${density}: ${fmt(4 * enc.params / bytes, 1)}x, ${fmt(enc.relFrobError, 3)}`)
}

// ---------------------------------------------------------------- gain kept on a small model that improved
let gain: Record<string, unknown> | null = null
if (opts['no-gain'] !== true) {
  await selectBackend('wasm')
  say('')
  t0 = performance.now()
  const setup = await gainSetup({ delta: { relRms: Number(opts['tiny-rel-rms']) }, windows: Number(opts.windows), length: Number(opts.length), seed: SEED })
  const lossless = await codecLoss(setup, { codec: 'f32' })
  const gap = setup.lossBase - lossless.loss
  say(`small model (qwen3-tiny fixture, ${setup.windows.length} windows x ${Number(opts.length)} tokens sampled from the target): loss base ${fmt(setup.lossBase, 5)}, target ${fmt(setup.lossTarget, 5)}, base + f32 delta ${fmt(lossless.loss, 5)} (gain ${fmt(gap, 5)} nats = ${fmt(gap / setup.lossBase * 100, 2)}%) (${fmt((performance.now() - t0) / 1000)} s)`)
  const kept = async (options: DeltaEncodeOptions): Promise<{ loss: number, gainKept: number, relToLossless: number, relFrobError: number }> => {
    const r = await codecLoss(setup, options)
    return { loss: round(r.loss, 7), gainKept: round((setup.lossBase - r.loss) / gap), relToLossless: round(Math.abs(r.loss - lossless.loss) / lossless.loss), relFrobError: round(r.relFrobError) }
  }
  const codecs: Record<string, unknown> = {}
  for (const c of CODECS.slice(1)) {
    const k = await kept({ codec: c.codec, ...c.options })
    codecs[c.codec] = { ...c.options, ...k }
    say(`  ${c.label.padEnd(15)} loss ${fmt(k.loss, 5)}  gain kept ${fmt(k.gainKept * 100)}%  loss vs lossless ${fmt(k.relToLossless * 100, 3)}%  rel frob err ${fmt(k.relFrobError, 3)}`)
  }
  const densitySweep = []
  for (const density of [0.01, 0.05, 0.1, 0.2, 0.5]) {
    densitySweep.push({ density, ...await kept({ codec: 'sparse', density }) })
  }
  say(`  sparse sweep (density: gain kept): ${densitySweep.map(s => `${s.density}: ${fmt(s.gainKept * 100)}%`).join(', ')}`)
  const rankSweep = []
  for (const rank of [4, 8, 16, 32]) {
    rankSweep.push({ rank, ...await kept({ codec: 'lowrank', rank }) })
  }
  say(`  lowrank sweep (rank: gain kept): ${rankSweep.map(s => `${s.rank}: ${fmt(s.gainKept * 100)}%`).join(', ')}`)
  const rounds = (await iteratedLoss(setup, { codec: 'sparse', density: DENSITY }, [1, 2, 5, 10, 20])).map(r => ({
    rounds: r.rounds,
    gainKept: round((setup.lossBase - r.loss) / gap),
    bytesOverLossless: round(r.bytes / lossless.bytes)
  }))
  say(`  sparse d=${DENSITY} proposed again against the live weights (rounds: gain kept, bytes / f32 delta bytes): ${rounds.map(r => `${r.rounds}: ${fmt(r.gainKept * 100)}% ${fmt(r.bytesOverLossless, 3)}`).join(', ')}`)
  // what sparse needs: a delta that is sparse by construction (a sparse fine-tune moving only the top DENSITY of each tensor)
  const sparseSetup = await gainSetup({ delta: { relRms: Number(opts['tiny-rel-rms']) }, windows: Number(opts.windows), length: Number(opts.length), seed: SEED, keepTop: DENSITY })
  const sparseLossless = await codecLoss(sparseSetup, { codec: 'f32' })
  const sparseGap = sparseSetup.lossBase - sparseLossless.loss
  const sparseOnSparse = await codecLoss(sparseSetup, { codec: 'sparse', density: DENSITY })
  const sparseFineTune = {
    lossBase: round(sparseSetup.lossBase, 7),
    lossLossless: round(sparseLossless.loss, 7),
    gainLossless: round(sparseGap),
    sparse: { density: DENSITY, loss: round(sparseOnSparse.loss, 7), gainKept: round((sparseSetup.lossBase - sparseOnSparse.loss) / sparseGap), relFrobError: round(sparseOnSparse.relFrobError) }
  }
  say(`  a sparse fine-tune (only the top ${DENSITY} of each tensor's delta moves): lossless gain ${fmt(sparseGap, 5)} nats (${fmt(sparseGap / sparseSetup.lossBase * 100, 2)}%), sparse d=${DENSITY} keeps ${fmt(sparseFineTune.sparse.gainKept * 100)}% (rel frob err ${fmt(sparseOnSparse.relFrobError, 4)})`)
  gain = {
    model: 'qwen3-tiny untied-f32',
    target: `base + realistic delta at ${opts['tiny-rel-rms']} x weight rms`,
    windows: setup.windows.length,
    windowTokens: Number(opts.length),
    lossBase: round(setup.lossBase, 7),
    lossTarget: round(setup.lossTarget, 7),
    lossLossless: round(lossless.loss, 7),
    gainLossless: round(gap),
    codecs,
    sparseDensitySweep: densitySweep,
    lowrankRankSweep: rankSweep,
    sparseRounds: rounds,
    sparseFineTune
  }
}

// ---------------------------------------------------------------- goals
const g = gain as { codecs: Record<string, { gainKept: number, relToLossless: number }> } | null
const goals = {
  sparseRatioAtLeast100: layerFigures.sparse.ratio >= 100,
  sparseGainKeptAtLeast95: g == null ? null : g.codecs.sparse.gainKept >= 0.95,
  int8RatioAtLeast4: layerFigures.int8.ratio >= 4,
  int8LossWithin01Percent: g == null ? null : g.codecs.int8.relToLossless <= 0.001,
  decodeApplyUnder1s: Object.fromEntries(Object.entries(layerFigures).map(([k, f]) => [k, f.decodeApplyMs <= 1000]))
}
say('')
say(`goals: sparse >= 100x ${String(goals.sparseRatioAtLeast100)}, sparse gain kept >= 95% ${String(goals.sparseGainKeptAtLeast95)}, int8 >= 4x ${String(goals.int8RatioAtLeast4)}, int8 loss within 0.1% ${String(goals.int8LossWithin01Percent)}, decode+apply <= 1 s: ${Object.entries(goals.decodeApplyUnder1s).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`)
say(`load average now ${fmt(loadavg()[0], 2)} (was ${fmt(load0, 2)})`)

process.stdout.write(JSON.stringify({
  bench: 'delta',
  layer: { config: opts.config, params: layer.params, f32Bytes: layerBytes },
  delta: { ...DELTA, rank: defaultDeltaRank(4096, 4096), nu: REALISTIC_DELTA_DEFAULTS.nu, channelSigma: REALISTIC_DELTA_DEFAULTS.channelSigma, top1PercentEnergy: round(topShare), inexactElements: inexact, changedParams },
  baseline: { copyMs: round(memcpy.ms), f32Ratio: 1 },
  codecs: Object.fromEntries(Object.entries(layerFigures).map(([k, f]) => [k, {
    bytes: f.bytes,
    ratio: round(f.ratio),
    maxAbsError: round(f.maxAbsError),
    relFrobError: round(f.relFrobError),
    encodeMs: round(f.encodeMs),
    decodeMs: round(f.decodeMs),
    applyMs: round(f.applyMs),
    decodeApplyMs: round(f.decodeApplyMs),
    decodeApplyOverCopy: round(f.decodeApplyMs / memcpy.ms)
  }])),
  options: { density: DENSITY, rank: RANK },
  sparseSweep,
  gain,
  goals
}) + '\n')
