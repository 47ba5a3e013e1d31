// Train bench (issue 12 item 6, first figure): forward+backward tokens/s of
// the trainer's work units against the forward-only tokens/s of the same
// decoder layers through the inference path (LayerRange.forward, a prefill
// of the same T tokens), on one thread of the chosen backend (default wasm).
// The layers are a Qwen3-0.6B shape by default (hidden 1024, intermediate
// 3072, 16 x 128 query heads, 8 kv heads) with random weights
// (bench/lib/random-layer.ts; the same layer for every index). Per mode
// (LoRA rank r on q,k,v,o,gate,up,down, and --full): forward units (each
// keeping the activations its backward needs) then backward units (the
// hand-written VJPs over them, src/learning/train/layer-vjp.ts) for one
// sequence of T tokens with a fixed upstream gradient. Also: the trainer's
// own forward unit (no tape, nothing kept). Every figure is the best of
// --runs after one warm-up, the figures measured in turn within each run
// (interleaved: a load that comes and goes on a shared machine hits them alike).
// --compare DIR: also the same figures of the training stage of another
// checkout of this repository (e.g. main's tree, `git archive main | tar -x
// -C DIR` with node_modules linked), interleaved with ours in the same process.
// Human lines, then one JSON object as the last line.
//
//   npm run bench -- train [--layers 2] [--seq 128] [--rank 8] [--runs 3] [--backend wasm] [--hidden 1024] [--no-full] [--compare DIR]
//                          [--no-interference] [--interference-only] [--interference-seq 128] [--interference-batch 4]
//                          [--interference-window 20] [--interference-rounds 2] [--interference-load 0.5]
//                          [--interference-tokens 32] [--interference-prompt 8] [--interference-cpu 0|none]
//                          [--interference-trainer thread|main]
//                          [--no-pipeline] [--pipeline-layers 4] [--pipeline-hidden 512] [--pipeline-seq 64]
//                          [--pipeline-steps 20] [--pipeline-batch 2]
//
// The pipeline figure (on by default; --no-pipeline skips it): the same LoRA
// job in one process and through 4 /bly/train/1.0.0 stages on libp2p nodes in
// this process (bench/lib/train-pipeline-figures.ts, also `npm run bench --
// train-pipeline`), as the JSON's `pipeline`, with its losses compared.
// The interference figures (on by default; --no-interference skips them) (bench/lib/train-interference.ts:
// inference p50/p95 step latency idle vs with the trainer running beside it in
// the same process as a daemon runs them, and the share of the idle CPU the
// trainer used, with the trainer on the main thread and in a training thread;
// the headline figures are --interference-trainer's, default thread, what the
// daemon runs) as the JSON's `interference`; the process is pinned to core
// --interference-cpu for it. --interference-only skips the forward+backward
// figures (their fields are then null).
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import * as ourStage from '../src/learning/train/stage.ts'
import { selectBackend } from '../src/model/backend.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { tf } from '../src/model/qwen3/tf.ts'
import { toFloat32 } from '../src/model/safetensors/dtypes.ts'
import { MapWeightSource } from '../src/model/weight-source.ts'
import { qwen3ShapeOfWidth, randomLayer } from './lib/random-layer.ts'
import { interferenceFigures } from './lib/train-interference.ts'
import { PIPELINE_FIGURES_DEFAULTS, pipelineFigures } from './lib/train-pipeline-figures.ts'
import type { Tensor2D } from '../src/model/qwen3/tf.ts'
import type { RawTensor } from '../src/model/safetensors/dtypes.ts'

const { values: opts } = parseArgs({
  options: {
    layers: { type: 'string', default: '2' },
    seq: { type: 'string', default: '128' },
    rank: { type: 'string', default: '8' },
    runs: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    hidden: { type: 'string', default: '1024' },
    'no-full': { type: 'boolean', default: false },
    compare: { type: 'string' },
    // interference (bench/lib/train-interference.ts)
    interference: { type: 'boolean', default: false },
    'no-interference': { type: 'boolean', default: false },
    // the pipeline figure (bench/lib/train-pipeline-figures.ts; bench/train-pipeline's defaults)
    'no-pipeline': { type: 'boolean', default: false },
    'pipeline-layers': { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.layers) },
    'pipeline-hidden': { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.hidden) },
    'pipeline-seq': { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.seq) },
    'pipeline-steps': { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.steps) },
    'pipeline-batch': { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.batch) },
    'interference-only': { type: 'boolean', default: false },
    'interference-seq': { type: 'string', default: '128' },
    'interference-batch': { type: 'string', default: '4' },
    'interference-window': { type: 'string', default: '20' },
    'interference-rounds': { type: 'string', default: '2' },
    'interference-load': { type: 'string', default: '0.5' },
    'interference-tokens': { type: 'string', default: '32' },
    'interference-prompt': { type: 'string', default: '8' },
    'interference-cpu': { type: 'string', default: '0' },
    'interference-trainer': { type: 'string', default: 'thread' }
  }
})
const LAYERS = Number(opts.layers)
const T = Number(opts.seq)
const RANK = Number(opts.rank)
const RUNS = Number(opts.runs)
const H = Number(opts.hidden)
const say = (s: string): void => { process.stderr.write(s + '\n') }
const round = (x: number, d = 3): number => Number(x.toFixed(d))

const config = qwen3ShapeOfWidth(H, LAYERS, 1024)

// ---- interference section (bench/lib/train-interference.ts) ----
// on by default (the figures of issue 12 item 6 in one line); --no-interference skips them
const INTERFERENCE = opts['interference-only'] || !opts['no-interference']
async function interference (): Promise<Awaited<ReturnType<typeof interferenceFigures>> | null> {
  if (!INTERFERENCE) {
    return null
  }
  const seq = Number(opts['interference-seq'])
  say(`interference: ${LAYERS} layer(s) hidden ${H}, trainer LoRA r=${RANK} seq ${seq}; ${opts['interference-rounds']} x (idle, main-thread trainer, training thread) windows of ${opts['interference-window']} s`)
  return interferenceFigures({
    config: qwen3ShapeOfWidth(H, LAYERS, 1024),
    seq,
    batch: Number(opts['interference-batch']),
    rank: RANK,
    windowS: Number(opts['interference-window']),
    rounds: Number(opts['interference-rounds']),
    load: Number(opts['interference-load']),
    tokens: Number(opts['interference-tokens']),
    promptTokens: Number(opts['interference-prompt']),
    cpu: opts['interference-cpu'] === 'none' ? null : Number(opts['interference-cpu']),
    headline: opts['interference-trainer'] === 'main' ? 'main' : 'thread',
    say
  })
}
if (opts['interference-only']) {
  const load0 = loadavg()[0]
  const backend = await selectBackend(opts.backend as any)
  const figures = await interference()
  say(`load average now ${loadavg()[0].toFixed(2)} (was ${load0.toFixed(2)})`)
  process.stdout.write(JSON.stringify({ bench: 'train', backend: backend.name, shape: null, baseline: null, lora: null, full: null, goals: interferenceGoals(figures), interference: figures, loadAverage: { before: round(load0, 2), after: round(loadavg()[0], 2) } }) + '\n')
  process.exit(0)
}
function interferenceGoals (f: Awaited<ReturnType<typeof interference>>): Record<string, boolean> {
  return f == null ? {} : { interferenceP95AtMost110: f.goals.p95RatioAtMost110, trainerCpuShareAtLeast80: f.goals.trainerCpuShareAtLeast80 }
}
// ---- end of the interference section ----

const load0 = loadavg()[0]
const backend = await selectBackend(opts.backend as any)
const layer = randomLayer(config)
const raw = new Map<string, RawTensor>()
for (let l = 0; l < LAYERS; l++) {
  for (const [name, t] of layer.tensors) {
    raw.set(name.replace('model.layers.0.', `model.layers.${l}.`), t)
  }
}
const f32 = new Map([...raw].map(([n, t]) => [n, toFloat32(t)]))
say(`train bench: ${LAYERS} layer(s) hidden ${H}, ${layer.params} params each, T = ${T}, backend ${backend.name}, runs ${RUNS}`)

const x = tf.randomNormal([T, H], 0, 1, 'float32', 7) as Tensor2D
const dyTop = tf.randomNormal([T, H], 0, 1e-3, 'float32', 8) as Tensor2D

/** What this bench uses of a training stage module (ours, or another checkout's). */
interface StageModule {
  TrainStage: new (init: ourStage.TrainStageInit) => { forwardLayer(l: number, x: Tensor2D, cache?: unknown): Tensor2D, backwardLayer(l: number, x: Tensor2D, dy: Tensor2D, scale: number, cache?: unknown): Tensor2D, params: Array<{ grad: Float32Array, values: Float32Array }>, dispose(): void }
  ProjectionCache: new () => { dispose(): void }
}
const theirStage = opts.compare == null ? null : await import(resolve(opts.compare, 'src/learning/train/stage.ts')) as StageModule

/** A figure: its run, and the best time over the rounds. */
interface Figure { run(): void, ms: number }
const figures: Figure[] = []
const figure = (run: () => void): Figure => {
  const f = { run, ms: Infinity }
  figures.push(f)
  return f
}

// forward only, the inference path
const model = await LayerRange.load(config, new MapWeightSource(raw), { start: 0, end: LAYERS })
const infer = figure(() => {
  const s = model.createSession()
  const y = model.forward(s, x)
  y.dataSync()
  y.dispose()
  s.dispose()
})

interface TrainCase { forward: Figure, step: Figure, trainable: number, dispose(): void }

function trainCase (mod: StageModule, full: boolean): TrainCase {
  const stage = new mod.TrainStage({ config, weights: f32, start: 0, end: LAYERS, embedding: false, head: false, seed: 1, mode: { full, rank: RANK, alpha: RANK, targets: ourStage.PROJECTIONS } })
  const forward = (cache?: unknown): Tensor2D[] => {
    const inputs = [x]
    for (let l = 0; l < LAYERS; l++) {
      inputs.push(stage.forwardLayer(l, inputs[l], cache))
    }
    return inputs
  }
  return {
    forward: figure(() => {
      const inputs = forward()
      inputs[LAYERS].dataSync()
      tf.dispose(inputs.slice(1))
    }),
    step: figure(() => {
      const cache = new mod.ProjectionCache()
      const inputs = forward(cache)
      let dy = dyTop
      for (let l = LAYERS - 1; l >= 0; l--) {
        const dx = stage.backwardLayer(l, inputs[l], dy, 1, cache)
        if (dy !== dyTop) {
          dy.dispose()
        }
        dy = dx
      }
      dy.dataSync()
      dy.dispose()
      tf.dispose(inputs.slice(1))
      cache.dispose()
      for (const p of stage.params) {
        p.grad.fill(0)
      }
    }),
    trainable: stage.params.reduce((n, p) => n + p.values.length, 0),
    dispose: () => { stage.dispose() }
  }
}

const cases = {
  lora: trainCase(ourStage, false),
  full: opts['no-full'] ? null : trainCase(ourStage, true),
  theirLora: theirStage == null ? null : trainCase(theirStage, false),
  theirFull: theirStage == null || opts['no-full'] ? null : trainCase(theirStage, true)
}
for (const f of figures) {
  f.run()
}
for (let r = 0; r < RUNS; r++) {
  for (const f of figures) {
    const t0 = performance.now()
    f.run()
    f.ms = Math.min(f.ms, performance.now() - t0)
  }
}
model.dispose()
for (const c of Object.values(cases)) {
  c?.dispose()
}

const inferMs = infer.ms
const inferTps = T / inferMs * 1000
say(`forward only (inference LayerRange.forward, prefill of ${T}): ${inferMs.toFixed(1)} ms, ${inferTps.toFixed(0)} tok/s`)

function trainFigures (c: TrainCase): { forwardMs: number, stepMs: number, tps: number, forwardTps: number, ratio: number, trainable: number } {
  const tps = T / c.step.ms * 1000
  return { forwardMs: c.forward.ms, stepMs: c.step.ms, tps, forwardTps: T / c.forward.ms * 1000, ratio: tps / inferTps, trainable: c.trainable }
}

const lora = trainFigures(cases.lora)
say(`LoRA r=${RANK}: trainer forward ${lora.forwardMs.toFixed(1)} ms (${lora.forwardTps.toFixed(0)} tok/s); forward+backward ${lora.stepMs.toFixed(1)} ms, ${lora.tps.toFixed(0)} tok/s = ${lora.ratio.toFixed(3)}x forward-only (goal >= 0.5)`)
const full = cases.full == null ? null : trainFigures(cases.full)
if (full != null) {
  say(`full: trainer forward ${full.forwardMs.toFixed(1)} ms; forward+backward ${full.stepMs.toFixed(1)} ms, ${full.tps.toFixed(0)} tok/s = ${full.ratio.toFixed(3)}x forward-only`)
}
const theirLora = cases.theirLora == null ? null : trainFigures(cases.theirLora)
const theirFull = cases.theirFull == null ? null : trainFigures(cases.theirFull)
if (theirLora != null) {
  say(`compared (${opts.compare}) LoRA r=${RANK}: trainer forward ${theirLora.forwardMs.toFixed(1)} ms; forward+backward ${theirLora.stepMs.toFixed(1)} ms, ${theirLora.tps.toFixed(0)} tok/s = ${theirLora.ratio.toFixed(3)}x forward-only`)
}
if (theirFull != null) {
  say(`compared (${opts.compare}) full: trainer forward ${theirFull.forwardMs.toFixed(1)} ms; forward+backward ${theirFull.stepMs.toFixed(1)} ms, ${theirFull.tps.toFixed(0)} tok/s = ${theirFull.ratio.toFixed(3)}x forward-only`)
}
say(`load average now ${loadavg()[0].toFixed(2)} (was ${load0.toFixed(2)})`)
tf.dispose([x, dyTop])
const interfered = await interference()
say('pipeline: the same LoRA job in one process and through 4 /bly/train stages (libp2p nodes in this process)')
const piped = opts['no-pipeline'] ? null : await pipelineFigures({ layers: Number(opts['pipeline-layers']), hidden: Number(opts['pipeline-hidden']), seq: Number(opts['pipeline-seq']), steps: Number(opts['pipeline-steps']), batch: Number(opts['pipeline-batch']), rank: RANK, say })
if (piped != null) {
  say(`pipeline ratio ${piped.ratio.toFixed(3)} of one process (goal >= 0.7)`)
}

const fig = (f: typeof lora): Record<string, number> => ({ forwardMs: round(f.forwardMs, 1), forwardBackwardMs: round(f.stepMs, 1), tokensPerSecond: round(f.tps, 1), trainerForwardTokensPerSecond: round(f.forwardTps, 1), ratioVsForwardOnly: round(f.ratio), trainableParams: f.trainable })
process.stdout.write(JSON.stringify({
  bench: 'train',
  backend: backend.name,
  recompute: 'each forward unit keeps the q|k|v and gate|up products, o_proj\'s input and the attention residual (ProjectionCache); each backward unit runs the hand-written VJPs over them (no tape): the big matMuls run once forward and once backward (dx = dy W^T; plus dW under --full)',
  shape: { layers: LAYERS, hidden: H, intermediate: config.intermediateSize, heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, seq: T, paramsPerLayer: layer.params },
  baseline: { forwardOnlyMs: round(inferMs, 1), forwardOnlyTokensPerSecond: round(inferTps, 1) },
  lora: { rank: RANK, ...fig(lora) },
  full: full == null ? null : fig(full),
  compare: theirLora == null ? null : { dir: opts.compare, lora: fig(theirLora), full: theirFull == null ? null : fig(theirFull) },
  goals: { loraForwardBackwardAtLeastHalfOfForward: lora.ratio >= 0.5, ...interferenceGoals(interfered), ...(piped == null ? {} : piped.goals) },
  interference: interfered,
  pipeline: piped,
  loadAverage: { before: round(load0, 2), after: round(loadavg()[0], 2) }
}) + '\n')
