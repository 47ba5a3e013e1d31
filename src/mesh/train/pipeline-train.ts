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
 * in micro-batch order. The eval loss (before the first step, after the
 * last) goes through the same stages forward only (EVAL frames).
 *
 * Faults (train-stage-set.ts, docs/training.md Faults): after every step
 * the driver keeps every stage's state (FETCH_STATE); a stage that fails
 * (its stream ends, it times out or refuses, it answers a non-finite value,
 * or an audit finds its answer wrong) is replaced by another holder of its
 * layers that loads that state, every other stage loads its own back, and
 * the step runs again with the same micro-batches: the result is the
 * undisturbed run's. Between SQUARES and STEP the stages whose answers call
 * for it (anomalous, a holder's first step, the seeded sample) are audited
 * by another holder, from the head down; no step with a rejected answer is
 * applied.
 */
import { performance } from 'node:perf_hooks'
import { ADAMW_DEFAULTS } from '../../learning/train/adamw.ts'
import { TrainStage } from '../../learning/train/stage.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { OpenJobFlags, PROJECTION_BITS, TrainFrameType } from '../../protocols/train.ts'
import { PIPELINE_TRAIN_DEFAULTS } from '../constants.ts'
import { AnswerHistory, emptyAnswers, emptyInputs, sampledAudit } from './train-audit.ts'
import { allFinite } from './train-frames.ts'
import { settleAll, TrainStageSet } from './train-stage-set.ts'
import type { StageAnswers, StageInputs } from './train-audit.ts'
import type { FaultCounts, TrainHolder } from './train-stage-set.ts'
import type { AdamWOptions } from '../../learning/train/adamw.ts'
import type { DataOrder } from '../../learning/train/data-order.ts'
import type { StepReport } from '../../learning/train/job.ts'
import type { TrainMode } from '../../learning/train/stage.ts'
import type { Qwen3Config } from '../../model/qwen3/config.ts'
import type { BlyLogger } from '../../protocols/logger.ts'
import type { F32Tensor, LossFrame, OpenJobFrame, ParamsFrame, ScalarFrame, TensorReplyFrame } from '../../protocols/train.ts'
import type { Stream } from '@libp2p/interface'

/** One hop of the route: layers [start, end) on the peer `connect` opens a /bly/train/1.0.0 stream to. */
export interface TrainHop {
  start: number
  end: number
  connect(): Promise<Stream>
  /** names the holder in logs (default `hop <index>`) */
  id?: string
  /** other live holders of these layers, tried in order when the hop's holder fails or answers garbage, and the auditors of its answers */
  alternatives?: TrainHolder[]
}

/** Garbage detection (see docs/training.md, Faults). */
export interface PipelineAuditOptions {
  /** share of steps on which one hop (a seeded choice) is audited anyway (default PIPELINE_TRAIN_DEFAULTS.auditRate) */
  rate?: number
  /** the anomaly bound: a gradient sum of squares over this many times the hop's recent largest (default 1e4) */
  factor?: number
  /** steps of history the bound looks at (default 16) */
  window?: number
  /** relative L2 distance within which two holders' answers agree (default 1e-4) */
  tolerance?: number
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
  /** faults recovered from before the job ends ERR_PTRAIN_TOO_MANY_FAULTS (default 8) */
  maxRecoveries?: number
  audit?: PipelineAuditOptions
  /** recoveries and audit verdicts are logged at warn */
  log?: BlyLogger
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
  /** the faults met and recovered from, the audits run */
  faults: FaultCounts
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
function openJobFrame (init: PipelineTrainInit, optimizer: AdamWOptions, s: number, job: string): OpenJobFrame {
  let targets = 0
  PROJECTION_BITS.forEach((p, i) => { if (init.mode.targets.includes(p)) { targets |= 1 << i } })
  const hop = init.route[s]
  return {
    type: TrainFrameType.OPEN_JOB,
    job,
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
async function fetchParams (set: TrainStageSet): Promise<Map<string, Float32Array>> {
  const candidate = new Map<string, Float32Array>()
  for (let s = 0; s < set.size; s++) {
    const r = await set.clients[s].request<ParamsFrame>({ type: TrainFrameType.FETCH_PARAMS, job: set.jobId(s) }, TrainFrameType.PARAMS)
    for (const t of r.tensors) {
      if (!allFinite(t.data)) {
        throw nonFinite(s, `trained tensor ${t.name}`)
      }
      candidate.set(t.name, t.data)
    }
  }
  return candidate
}

/** The holders of every hop: its own, then its alternatives. */
function holdersOf (route: readonly TrainHop[]): TrainHolder[][] {
  return route.map((hop, s) => [{ id: hop.id ?? `hop ${s}`, connect: hop.connect }, ...(hop.alternatives ?? [])])
}

/** The audit options with their defaults. */
function auditOptions (o: PipelineAuditOptions = {}): Required<PipelineAuditOptions> {
  const d = PIPELINE_TRAIN_DEFAULTS
  return { rate: o.rate ?? d.auditRate, factor: o.factor ?? d.anomalyFactor, window: o.window ?? d.anomalyWindow, tolerance: o.tolerance ?? d.auditTolerance }
}

/** The job's stages: every hop's holders, its OPEN_JOB, the bounds. */
function stageSet (init: PipelineTrainInit, optimizer: AdamWOptions, tolerance: number): TrainStageSet {
  const d = PIPELINE_TRAIN_DEFAULTS
  return new TrainStageSet({
    job: init.job,
    holders: holdersOf(init.route),
    openFrame: (s, job) => openJobFrame(init, optimizer, s, job),
    timeoutMs: init.requestTimeoutMs ?? d.requestTimeoutMs,
    maxFrameBytes: init.maxFrameBytes ?? d.maxFrameBytes,
    maxRecoveries: init.maxRecoveries ?? d.maxRecoveries,
    auditTolerance: tolerance,
    ...(init.log != null ? { log: init.log } : {})
  })
}

/** Runs the job over the route (see the file comment); the stages' jobs are closed at the end, whatever happened. */
export async function runPipelineTraining (init: PipelineTrainInit): Promise<PipelineTrainResult> {
  const { config, route, steps, batch } = init
  checkInit(init)
  const optimizer: AdamWOptions = { ...ADAMW_DEFAULTS, ...init.optimizer }
  const audit = auditOptions(init.audit)
  const embed = new TrainStage({ config, weights: init.weights, start: 0, end: 0, embedding: true, head: false, seed: init.seed, mode: init.mode })
  const set = stageSet(init, optimizer, audit.tolerance)
  const history = route.map(() => new AnswerHistory(audit.window, audit.factor))
  /** holders whose first step was audited (or could not be: no other holder) */
  const vetted = route.map(() => new Set<string>())
  const last = route.length - 1
  try {
    await set.open()
    /** One sequence through every stage (FORWARD: held for its BACKWARD; EVAL: forward only): its loss. `rec` keeps what each stage was sent and answered. */
    const forward = async (type: typeof TrainFrameType.FORWARD | typeof TrainFrameType.EVAL, step: number, micro: number, ids: Uint32Array, rec?: Array<{ inputs: StageInputs, answers: StageAnswers }>): Promise<number> => {
      const e = embed.embed(ids)
      let x: F32Tensor = { rows: e.shape[0], cols: e.shape[1], data: e.dataSync() as Float32Array }
      e.dispose()
      const what = type === TrainFrameType.EVAL ? `eval sequence ${micro}` : `micro-batch ${micro} (step ${step})`
      for (let s = 0; s < last; s++) {
        if (rec != null) {
          rec[s].inputs.ids[micro] = ids
          rec[s].inputs.xs[micro] = x
        }
        const r = await set.clients[s].request<TensorReplyFrame<typeof TrainFrameType.ACTIVATIONS>>({ type, job: set.jobId(s), step, micro, ids, x }, TrainFrameType.ACTIVATIONS, step, micro)
        if (r.x.rows !== x.rows || r.x.cols !== x.cols) {
          throw new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${s} answered activations [${r.x.rows}, ${r.x.cols}] to [${x.rows}, ${x.cols}]`, { stage: s })
        }
        if (!allFinite(r.x.data)) {
          throw nonFinite(s, `the activations of ${what}`)
        }
        x = r.x
        if (rec != null) {
          rec[s].answers.outs[micro] = x
        }
      }
      if (rec != null) {
        rec[last].inputs.ids[micro] = ids
        rec[last].inputs.xs[micro] = x
      }
      const r = await set.clients[last].request<LossFrame>({ type, job: set.jobId(last), step, micro, ids, x }, TrainFrameType.LOSS, step, micro)
      if (!Number.isFinite(r.loss)) {
        throw nonFinite(last, `the loss of ${what}`)
      }
      if (rec != null) {
        rec[last].answers.outs[micro] = r.loss
      }
      return r.loss
    }
    /** The mean loss of the eval sequences under the stages' current weights (summed in order, as evalUnits does). */
    const evalLoss = async (): Promise<number> => set.run('the eval loss', async () => {
      const seqs = init.evalSequences ?? []
      const each = await settleAll(seqs.map(async (ids, i) => forward(TrainFrameType.EVAL, 0, i, ids)))
      let sum = 0
      for (const l of each) {
        sum += l
      }
      return seqs.length === 0 ? NaN : sum / seqs.length
    })
    /** Audits the hops whose answers call for it (anomalous, a holder's first step, the seeded sample), downstream first: a garbage gradient upsets every hop above it. */
    const auditStep = async (step: number, rec: Array<{ inputs: StageInputs, answers: StageAnswers }>): Promise<void> => {
      const sampled = sampledAudit(init.seed, step, audit.rate, route.length)
      for (let s = last; s >= 0; s--) {
        const anomaly = history[s].anomalous(rec[s].answers)
        const first = !vetted[s].has(set.holderId(s))
        if (anomaly == null && !first && sampled !== s) {
          continue
        }
        const verdict = await set.audit(s, step, rec[s].inputs, rec[s].answers, history[s], anomaly, s === last)
        if (verdict === 'unverified' && anomaly != null) {
          set.counts.unverified++
          init.log?.warn('train job %s: stage %d answered an anomalous step %d (%s) and no other holder can audit it: applied', init.job, s, step, anomaly)
        }
        vetted[s].add(set.holderId(s))
      }
    }
    /** One optimizer step over `seqs` (the same on every retry): forwards, backwards, the sum of squares, the audits, STEP, the next checkpoint. */
    const runStep = async (step: number, seqs: Uint32Array[]): Promise<{ losses: number[], squares: number, rec: Array<{ inputs: StageInputs, answers: StageAnswers }> }> => {
      const rec = route.map(() => ({ inputs: emptyInputs(), answers: emptyAnswers() }))
      // GPipe forward: every micro-batch through every stage (pipelined; each stage serves in arrival order)
      const losses = await settleAll(seqs.map(async (ids, micro) => forward(TrainFrameType.FORWARD, step, micro, ids, rec)))
      // GPipe backward: from the head down, micro-batches in order
      await settleAll(seqs.map(async (ids, micro) => {
        let dy: F32Tensor = { rows: 0, cols: 0, data: new Float32Array(0) }
        for (let s = last; s >= 0; s--) {
          rec[s].inputs.dys[micro] = dy
          const r = await set.clients[s].request<TensorReplyFrame<typeof TrainFrameType.GRADIENT>>({ type: TrainFrameType.BACKWARD, job: set.jobId(s), step, micro, x: dy }, TrainFrameType.GRADIENT, step, micro)
          if (r.x.rows !== ids.length || r.x.cols !== config.hiddenSize) {
            throw new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${s} answered a gradient [${r.x.rows}, ${r.x.cols}] for ${ids.length} tokens`, { stage: s })
          }
          if (!allFinite(r.x.data)) {
            throw nonFinite(s, `the input gradient of micro-batch ${micro} (step ${step})`)
          }
          dy = r.x
          rec[s].answers.grads[micro] = dy
        }
      }))
      // the global sum of squares, continued stage after stage in layer order
      let squares = 0
      for (let s = 0; s <= last; s++) {
        rec[s].inputs.from = squares
        const r = await set.clients[s].request<ScalarFrame<typeof TrainFrameType.SQUARES>>({ type: TrainFrameType.SUM_SQUARES, job: set.jobId(s), step, value: squares }, TrainFrameType.SQUARES, step)
        if (!Number.isFinite(r.value) || r.value < squares) {
          throw nonFinite(s, `a sum of squares ${r.value} (running total ${squares}, step ${step})`)
        }
        rec[s].answers.own = r.value - squares
        squares = r.value
      }
      // no step is applied with an answer an audit rejects
      await auditStep(step, rec)
      await settleAll(set.clients.map(async (c, s) => c.request({ type: TrainFrameType.STEP, job: set.jobId(s), step, value: squares }, TrainFrameType.STEPPED, step)))
      set.checkpoint = await set.fetchStates()
      return { losses, squares, rec }
    }
    const before = await evalLoss()
    init.onEval?.(0, before)
    const losses: number[] = []
    let tokens = 0
    let ms = 0
    for (let step = 1; step <= steps; step++) {
      const t0 = performance.now()
      const seqs = Array.from({ length: batch }, () => init.data.take())
      const r = await set.run(`step ${step}`, async () => runStep(step, seqs))
      r.rec.forEach((x, s) => { history[s].accept(x.answers) })
      let sum = 0
      for (const l of r.losses) {
        sum += l
      }
      const loss = sum / batch
      losses.push(loss)
      const stepTokens = seqs.reduce((n, ids) => n + ids.length, 0)
      tokens += stepTokens
      ms += performance.now() - t0
      init.onStep?.({ step, loss, tokens: stepTokens, gradNorm: Math.sqrt(r.squares) })
      const every = init.evalEvery ?? 0
      if (every > 0 && step % every === 0 && step < steps) {
        init.onEval?.(step, await evalLoss())
      }
    }
    const after = await evalLoss()
    init.onEval?.(steps, after)
    const candidate = await set.run('the fetch of the trained tensors', async () => fetchParams(set))
    await set.close()
    return { steps, losses, evalLoss: { before, after }, tokensPerSecond: tokens / Math.max(ms, 1e-3) * 1000, candidate, faults: { ...set.counts } }
  } finally {
    await set.closeStreams()
    embed.dispose()
  }
}
