/**
 * The pipeline-training driver: the same job as the one-process trainer
 * (learning/train/job.ts: `steps` optimizer steps of `batch` micro-batches
 * from a DataOrder, gradients averaged, AdamW clipped by global norm and
 * warmed up) run over N stages of /bly/train/1.0.0 holding consecutive
 * layer ranges. The driver holds the (frozen) embedding and relays every
 * tensor; the last stage holds the final norm, the head and the loss.
 *
 * Schedule: GPipe. Per step, every micro-batch's FORWARD through the stages
 * (micro-batches pipelined: stage s works on micro-batch b while stage s+1
 * works on b-1), then every BACKWARD from the last stage down, then the
 * running sum of squares through the stages in order, then STEP on every
 * stage with the global total. GPipe rather than 1F1B: the same math, a
 * simpler order to check (each stage sees all forwards, then all
 * backwards), and its cost (every micro-batch's activations held until its
 * backward) is small at the few micro-batches per step a job uses; the
 * stages bound it anyway (BUSY). The backwards go in micro-batch order, so
 * each stage accumulates its gradients in the order one process does.
 *
 * Same result as one process: the embedding, each layer's forward and
 * backward, the head and AdamW run the same code on the same values; the
 * sum of squares is continued stage after stage (SUM_SQUARES carries the
 * running total), so the clip factor is the same float; the loss is summed
 * in micro-batch order. A stage's answer holding a non-finite value is
 * refused (TrainProtocolError NON_FINITE naming the stage): nothing of that
 * step is applied on any stage, and the job ends. The eval loss (before the
 * first step, after the last) goes through the same stages forward only
 * (EVAL frames).
 */
import { performance } from 'node:perf_hooks'
import { ADAMW_DEFAULTS } from '../../learning/train/adamw.ts'
import { TrainStage } from '../../learning/train/stage.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { OpenJobFlags, PROJECTION_BITS, TrainFrameType } from '../../protocols/train.ts'
import { PIPELINE_TRAIN_DEFAULTS } from '../constants.ts'
import { allFinite } from './train-frames.ts'
import { TrainStageClient } from './train-stage-client.ts'
import type { AdamWOptions } from '../../learning/train/adamw.ts'
import type { DataOrder } from '../../learning/train/data-order.ts'
import type { StepReport } from '../../learning/train/job.ts'
import type { TrainMode } from '../../learning/train/stage.ts'
import type { Qwen3Config } from '../../model/qwen3/config.ts'
import type { F32Tensor, LossFrame, OpenJobFrame, ParamsFrame, ScalarFrame, TensorReplyFrame, TrainFrame } from '../../protocols/train.ts'
import type { Stream } from '@libp2p/interface'

/** One hop of the route: layers [start, end) on the peer `connect` opens a /bly/train/1.0.0 stream to. */
export interface TrainHop {
  start: number
  end: number
  connect(): Promise<Stream>
}

export interface PipelineTrainInit {
  job: string
  model: string
  /** weights version id ('' = the stages' live version) */
  version: string
  config: Qwen3Config
  /** the driver's copy of the embedding (frozen): at least embed_tokens */
  weights: ReadonlyMap<string, Float32Array>
  /** consecutive ranges covering [0, numLayers) */
  route: TrainHop[]
  data: DataOrder
  /** sequences the eval loss is measured on before and after (forward only, EVAL frames) */
  evalSequences?: readonly Uint32Array[]
  /** also measure the eval loss after every this many steps (0: before and after only) */
  evalEvery?: number
  /** each eval loss measured (step 0: before the first step) */
  onEval?(step: number, loss: number): void
  steps: number
  batch: number
  optimizer: Partial<AdamWOptions> & { lr: number }
  mode: TrainMode
  seed: number
  onStep?(r: StepReport): void
  requestTimeoutMs?: number
  maxFrameBytes?: number
}

export interface PipelineTrainResult {
  steps: number
  /** the mean training loss of each step */
  losses: number[]
  /** the mean loss of `evalSequences` before the first step and after the last (NaN without them) */
  evalLoss: { before: number, after: number }
  tokensPerSecond: number
  /** the trained tensors of every stage by checkpoint name (stored layout): TrainStage.candidate() of the whole model */
  candidate: Map<string, Float32Array>
}

function invalid (message: string): TrainProtocolError {
  return new TrainProtocolError(TrainProtocolErrorCode.INVALID_ARGUMENT, message)
}

function nonFinite (stage: number, what: string): TrainProtocolError {
  return new TrainProtocolError(TrainProtocolErrorCode.NON_FINITE, `stage ${stage} answered ${what} holding a non-finite value: refused, the step is not applied`, { stage })
}

function checkRoute (route: readonly TrainHop[], layers: number): void {
  let at = 0
  for (const hop of route) {
    if (hop.start !== at || hop.end <= hop.start) {
      throw invalid(`the route does not cover layers [0, ${layers}) in order: a hop is [${hop.start}, ${hop.end}) where layer ${at} is next`)
    }
    at = hop.end
  }
  if (at !== layers || route.length === 0) {
    throw invalid(`the route covers layers [0, ${at}), the model has ${layers}`)
  }
}

/** The OPEN_JOB of hop `s` of the route. */
function openJobFrame (init: PipelineTrainInit, optimizer: AdamWOptions, s: number): OpenJobFrame {
  let targets = 0
  PROJECTION_BITS.forEach((p, i) => { if (init.mode.targets.includes(p)) { targets |= 1 << i } })
  const hop = init.route[s]
  return {
    type: TrainFrameType.OPEN_JOB,
    job: init.job,
    model: init.model,
    version: init.version,
    start: hop.start,
    end: hop.end,
    flags: (init.mode.full ? OpenJobFlags.FULL : 0) | (s === init.route.length - 1 ? OpenJobFlags.HEAD : 0),
    rank: init.mode.full ? 0 : init.mode.rank,
    alpha: init.mode.alpha,
    targets,
    seed: init.seed,
    batch: init.batch,
    lr: optimizer.lr,
    beta1: optimizer.beta1,
    beta2: optimizer.beta2,
    eps: optimizer.eps,
    weightDecay: optimizer.weightDecay,
    clip: optimizer.clip,
    warmup: optimizer.warmup
  }
}

function checkInit (init: PipelineTrainInit): void {
  checkRoute(init.route, init.config.numLayers)
  if (!Number.isSafeInteger(init.steps) || init.steps < 1 || !Number.isSafeInteger(init.batch) || init.batch < 1) {
    throw invalid(`steps and batch must be positive integers (got ${init.steps}, ${init.batch})`)
  }
}

/** Every stage's trained tensors by name (FETCH_PARAMS), refused when one is not finite. */
async function fetchParams (clients: readonly TrainStageClient[], job: string): Promise<Map<string, Float32Array>> {
  const candidate = new Map<string, Float32Array>()
  for (const c of clients) {
    const r = await c.request<ParamsFrame>({ type: TrainFrameType.FETCH_PARAMS, job }, TrainFrameType.PARAMS)
    for (const t of r.tensors) {
      if (!allFinite(t.data)) {
        throw nonFinite(c.stage, `trained tensor ${t.name}`)
      }
      candidate.set(t.name, t.data)
    }
  }
  return candidate
}

/** Runs the job over the route (see the file comment); the stages' jobs are closed at the end, whatever happened. */
export async function runPipelineTraining (init: PipelineTrainInit): Promise<PipelineTrainResult> {
  const { config, route, steps, batch } = init
  checkInit(init)
  const optimizer: AdamWOptions = { ...ADAMW_DEFAULTS, ...init.optimizer }
  const timeoutMs = init.requestTimeoutMs ?? PIPELINE_TRAIN_DEFAULTS.requestTimeoutMs
  const maxFrameBytes = init.maxFrameBytes ?? PIPELINE_TRAIN_DEFAULTS.maxFrameBytes
  const embed = new TrainStage({ config, weights: init.weights, start: 0, end: 0, embedding: true, head: false, seed: init.seed, mode: init.mode })
  const clients: TrainStageClient[] = []
  try {
    for (let s = 0; s < route.length; s++) {
      clients.push(new TrainStageClient(await route[s].connect(), { stage: s, timeoutMs, maxFrameBytes }))
    }
    const last = route.length - 1
    await Promise.all(clients.map(async (c, s) => c.request(openJobFrame(init, optimizer, s), TrainFrameType.OPENED)))
    /** One sequence through every stage (FORWARD: held for its BACKWARD; EVAL: forward only): its loss. */
    const forward = async (type: typeof TrainFrameType.FORWARD | typeof TrainFrameType.EVAL, step: number, micro: number, ids: Uint32Array): Promise<number> => {
      const e = embed.embed(ids)
      let x: F32Tensor = { rows: e.shape[0], cols: e.shape[1], data: e.dataSync() as Float32Array }
      e.dispose()
      const what = type === TrainFrameType.EVAL ? `eval sequence ${micro}` : `micro-batch ${micro} (step ${step})`
      for (let s = 0; s < last; s++) {
        const r = await clients[s].request<TensorReplyFrame<typeof TrainFrameType.ACTIVATIONS>>({ type, job: init.job, step, micro, ids, x }, TrainFrameType.ACTIVATIONS, step, micro)
        if (r.x.rows !== x.rows || r.x.cols !== x.cols) {
          throw new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${s} answered activations [${r.x.rows}, ${r.x.cols}] to [${x.rows}, ${x.cols}]`, { stage: s })
        }
        if (!allFinite(r.x.data)) {
          throw nonFinite(s, `the activations of ${what}`)
        }
        x = r.x
      }
      const r = await clients[last].request<LossFrame>({ type, job: init.job, step, micro, ids, x }, TrainFrameType.LOSS, step, micro)
      if (!Number.isFinite(r.loss)) {
        throw nonFinite(last, `the loss of ${what}`)
      }
      return r.loss
    }
    /** The mean loss of the eval sequences under the stages' current weights (summed in order, as evalUnits does). */
    const evalLoss = async (): Promise<number> => {
      const seqs = init.evalSequences ?? []
      const each = await Promise.all(seqs.map(async (ids, i) => forward(TrainFrameType.EVAL, 0, i, ids)))
      let sum = 0
      for (const l of each) {
        sum += l
      }
      return seqs.length === 0 ? NaN : sum / seqs.length
    }
    const before = await evalLoss()
    init.onEval?.(0, before)
    const losses: number[] = []
    let tokens = 0
    let ms = 0
    for (let step = 1; step <= steps; step++) {
      const t0 = performance.now()
      const seqs = Array.from({ length: batch }, () => init.data.take())
      // GPipe forward: every micro-batch through every stage (pipelined; each stage serves in arrival order)
      const stepLosses = await Promise.all(seqs.map(async (ids, micro) => forward(TrainFrameType.FORWARD, step, micro, ids)))
      // GPipe backward: from the head down, micro-batches in order
      await Promise.all(seqs.map(async (ids, micro) => {
        let dy: F32Tensor = { rows: 0, cols: 0, data: new Float32Array(0) }
        for (let s = last; s >= 0; s--) {
          const r = await clients[s].request<TensorReplyFrame<typeof TrainFrameType.GRADIENT>>({ type: TrainFrameType.BACKWARD, job: init.job, step, micro, x: dy }, TrainFrameType.GRADIENT, step, micro)
          if (r.x.rows !== ids.length || r.x.cols !== config.hiddenSize) {
            throw new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${s} answered a gradient [${r.x.rows}, ${r.x.cols}] for ${ids.length} tokens`, { stage: s })
          }
          if (!allFinite(r.x.data)) {
            throw nonFinite(s, `the input gradient of micro-batch ${micro} (step ${step})`)
          }
          dy = r.x
        }
      }))
      // the global sum of squares, continued stage after stage in layer order
      let squares = 0
      for (let s = 0; s <= last; s++) {
        const r = await clients[s].request<ScalarFrame<typeof TrainFrameType.SQUARES>>({ type: TrainFrameType.SUM_SQUARES, job: init.job, step, value: squares }, TrainFrameType.SQUARES, step)
        if (!Number.isFinite(r.value) || r.value < squares) {
          throw nonFinite(s, `a sum of squares ${r.value} (running total ${squares}, step ${step})`)
        }
        squares = r.value
      }
      await Promise.all(clients.map(async c => c.request({ type: TrainFrameType.STEP, job: init.job, step, value: squares }, TrainFrameType.STEPPED, step)))
      let sum = 0
      for (const l of stepLosses) {
        sum += l
      }
      const loss = sum / batch
      losses.push(loss)
      const stepTokens = seqs.reduce((n, ids) => n + ids.length, 0)
      tokens += stepTokens
      ms += performance.now() - t0
      init.onStep?.({ step, loss, tokens: stepTokens, gradNorm: Math.sqrt(squares) })
      const every = init.evalEvery ?? 0
      if (every > 0 && step % every === 0 && step < steps) {
        init.onEval?.(step, await evalLoss())
      }
    }
    const after = await evalLoss()
    init.onEval?.(steps, after)
    const candidate = await fetchParams(clients, init.job)
    await Promise.all(clients.map(async c => c.request({ type: TrainFrameType.CLOSE, job: init.job } satisfies TrainFrame, TrainFrameType.CLOSED)))
    return { steps, losses, evalLoss: { before, after }, tokensPerSecond: tokens / Math.max(ms, 1e-3) * 1000, candidate }
  } finally {
    await Promise.all(clients.map(async c => { await c.close() }))
    embed.dispose()
  }
}
