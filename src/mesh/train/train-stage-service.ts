/**
 * The train stage service: serves /bly/train/1.0.0, hosting one
 * TrainStageJob per job a driver opens (the job's layers, its trainable
 * tensors and AdamW moments, its held activations). Each stream carries one
 * job: its requests are served one at a time in arrival order, each answered
 * before the next starts; the stream's end (or CLOSE) frees the job.
 *
 * Priority: every work unit (one layer x one micro-batch) runs through the
 * service's MicroStepScheduler, whose busy() is the node's inference (the
 * daemon's generations and served sessions): training waits while it holds,
 * so training traffic runs at background priority. Bounds: at most
 * `maxJobs` jobs (an OPEN_JOB past it is answered BUSY) and `maxJobBytes` of
 * held activations per job (a FORWARD past it is answered BUSY). Activations
 * or gradients holding NaN or an infinity are refused NON_FINITE before any
 * work. A frame that does not decode is answered BAD_FRAME and the stream is
 * ended; every other refusal leaves the job as it was.
 */
import { ADAMW_DEFAULTS } from '../../learning/train/adamw.ts'
import { TrainError, TrainErrorCode } from '../../learning/train/errors.ts'
import { MicroStepScheduler } from '../../learning/train/scheduler.ts'
import { TrainStage, PROJECTIONS } from '../../learning/train/stage.ts'
import { FrameStream } from '../../net/frame-stream.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { OpenJobFlags, PROJECTION_BITS, TRAIN_PROTOCOL, TrainFrameType, TrainWireError } from '../../protocols/train.ts'
import { TRAIN_STAGE_DEFAULTS } from '../constants.ts'
import { corruptGradients, corruptInPlace, garbageAt } from './train-fault-injection.ts'
import { trainFrameCodec } from './train-frames.ts'
import { refuse, TrainStageJob } from './train-stage-job.ts'
import type { TrainStageFaults } from './train-fault-injection.ts'
import type { Projection } from '../../learning/train/stage.ts'
import type { Qwen3Config } from '../../model/qwen3/config.ts'
import type { BlyComponentLogger, BlyLogger } from '../../protocols/logger.ts'
import type { F32Tensor, OpenJobFrame, TrainFrame } from '../../protocols/train.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

export interface TrainStageServiceComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  /** logs as bly:mesh:train-stage */
  logger: BlyComponentLogger
}

/** A model's base weights as training reads them (f32 by checkpoint name, stored layouts). */
export interface TrainWeights {
  config: Qwen3Config
  weights: ReadonlyMap<string, Float32Array>
}

export interface TrainStageServiceInit {
  /** the weights of `model` at `version` ('' = the live version) that layers [start, end) (and the head) need; throws (or null) when not served */
  weights(model: string, version: string, layers: { start: number, end: number, head: boolean }): Promise<TrainWeights | null>
  /** true while the node's inference runs: training units wait (MicroStepScheduler's rule) */
  busy?(): boolean
  maxJobs?: number
  maxJobBytes?: number
  maxFrameBytes?: number
  maxInboundStreams?: number
  /** FAULT INJECTION FOR TESTS ONLY (train-fault-injection.ts): a slow stage, a stage answering garbage gradients */
  faults?: TrainStageFaults
}

export interface TrainStageStats {
  jobsOpened: number
  jobsActive: number
  /** requests refused, by wire code name */
  refused: Record<string, number>
  units: number
  deferrals: number
  /** checkpoints sent (FETCH_STATE) and taken (LOAD_STATE) */
  statesSent: number
  statesLoaded: number
}

const CODE_NAMES = Object.fromEntries(Object.entries(TrainWireError).map(([k, v]) => [v, k]))

export class TrainStageService {
  readonly stats: TrainStageStats
  private readonly libp2p: TrainStageServiceComponents['libp2p']
  private readonly log: BlyLogger
  private readonly init: Required<Omit<TrainStageServiceInit, 'busy' | 'faults'>>
  private readonly faults: TrainStageFaults | undefined
  private readonly scheduler: MicroStepScheduler
  private readonly jobs: Map<string, TrainStageJob>
  private readonly streams: Set<FrameStream<TrainFrame>>
  private started: boolean

  constructor (components: TrainStageServiceComponents, init: TrainStageServiceInit) {
    this.libp2p = components.libp2p
    this.log = components.logger.forComponent('bly:mesh:train-stage')
    this.init = { ...TRAIN_STAGE_DEFAULTS, ...Object.fromEntries(Object.entries(init).filter(([k, v]) => v !== undefined && k !== 'faults')) } as Required<Omit<TrainStageServiceInit, 'busy' | 'faults'>>
    this.faults = init.faults
    this.scheduler = new MicroStepScheduler(init.busy != null ? { busy: init.busy } : {})
    this.jobs = new Map()
    this.streams = new Set()
    this.started = false
    this.stats = { jobsOpened: 0, jobsActive: 0, refused: {}, units: 0, deferrals: 0, statesSent: 0, statesLoaded: 0 }
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    if (this.faults != null) {
      this.log.warn('FAULT INJECTION ON (tests only): %j', this.faults)
    }
    await this.libp2p.handle(TRAIN_PROTOCOL, (stream) => { this.accept(stream) }, { maxInboundStreams: this.init.maxInboundStreams })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    await this.libp2p.unhandle(TRAIN_PROTOCOL).catch(() => {})
    for (const s of [...this.streams]) {
      s.abort(new TrainProtocolError(TrainProtocolErrorCode.NOT_STARTED, 'the train stage service is stopping'))
    }
  }

  private accept (stream: Stream): void {
    let chain = Promise.resolve()
    let jobId: string | null = null
    let pending = 0
    const fs: FrameStream<TrainFrame> = new FrameStream<TrainFrame>(stream, {
      codec: trainFrameCodec,
      maxFrameBytes: this.init.maxFrameBytes,
      onFrame: (frame) => {
        pending++
        chain = chain.then(async () => {
          const reply = await this.serve(frame, jobId).catch((err: unknown) => this.errorFrame(err, 'job' in frame ? frame.job : ''))
          if (reply.type === TrainFrameType.OPENED) {
            jobId = reply.job
          } else if (reply.type === TrainFrameType.CLOSED) {
            jobId = null
          }
          await fs.send(reply)
        }).catch((err: Error) => { this.log('train stream write failed - %s', err.message) })
          .finally(() => {
            pending--
            // the driver ended its side and every answer went out: end ours (the job is freed on close)
            if (pending === 0 && stream.readStatus === 'closed') {
              void fs.close()
            }
          })
      },
      // the driver ended its writing: close once every request is answered
      isIdle: () => pending === 0,
      onBadFrame: (err) => {
        void fs.send({ type: TrainFrameType.ERROR, code: TrainWireError.BAD_FRAME, job: jobId ?? '', message: err.message })
          .catch(() => {})
          .finally(() => { fs.abort(err) })
      },
      onClose: () => {
        this.streams.delete(fs)
        void chain.finally(() => {
          if (jobId != null) {
            this.closeJob(jobId)
          }
        })
      }
    })
    this.streams.add(fs)
  }

  private errorFrame (err: unknown, job: string): TrainFrame {
    let code: number = TrainWireError.INTERNAL
    if (err instanceof TrainProtocolError && err.code === TrainProtocolErrorCode.REFUSED && err.remoteCode != null) {
      code = err.remoteCode
    } else if (err instanceof TrainError && (err.code === TrainErrorCode.OPTION || err.code === TrainErrorCode.DATA)) {
      // a layer range outside the model, a token id outside the vocabulary...
      code = TrainWireError.BAD_REQUEST
    }
    const name = CODE_NAMES[code] ?? String(code)
    this.stats.refused[name] = (this.stats.refused[name] ?? 0) + 1
    const message = err instanceof Error ? err.message : String(err)
    if (code === TrainWireError.INTERNAL) {
      this.log.error('train job %s failed - %s', job, message)
    }
    return { type: TrainFrameType.ERROR, code, job, message }
  }

  private jobOf (id: string, streamJob: string | null): TrainStageJob {
    const job = streamJob === id ? this.jobs.get(id) : undefined
    if (job == null) {
      throw refuse(TrainWireError.UNKNOWN_JOB, `no job ${id} on this stream`)
    }
    return job
  }

  /** Runs `units` through the scheduler (inference first). */
  private async work (units: Generator<string, void, void>): Promise<void> {
    const before = this.scheduler.units
    const deferrals = this.scheduler.deferrals
    await this.scheduler.run(units)
    this.stats.units += this.scheduler.units - before
    this.stats.deferrals += this.scheduler.deferrals - deferrals
  }

  // eslint-disable-next-line complexity
  private async serve (frame: TrainFrame, streamJob: string | null): Promise<TrainFrame> {
    const delay = this.faults?.unitDelayMs ?? 0
    if (delay > 0 && (frame.type === TrainFrameType.FORWARD || frame.type === TrainFrameType.BACKWARD || frame.type === TrainFrameType.EVAL)) {
      await new Promise(resolve => setTimeout(resolve, delay))
    }
    switch (frame.type) {
      case TrainFrameType.OPEN_JOB:
        if (streamJob != null) {
          throw refuse(TrainWireError.BAD_REQUEST, `this stream already carries job ${streamJob}`)
        }
        await this.openJob(frame)
        return { type: TrainFrameType.OPENED, job: frame.job }
      case TrainFrameType.FORWARD: {
        const job = this.jobOf(frame.job, streamJob)
        const out: { x?: F32Tensor, loss?: number } = {}
        await this.work(job.forward(frame.step, frame.micro, frame.ids, frame.x, out))
        return out.x != null
          ? { type: TrainFrameType.ACTIVATIONS, job: frame.job, step: frame.step, micro: frame.micro, x: out.x }
          : { type: TrainFrameType.LOSS, job: frame.job, step: frame.step, micro: frame.micro, loss: out.loss as number }
      }
      case TrainFrameType.EVAL: {
        const job = this.jobOf(frame.job, streamJob)
        const out: { x?: F32Tensor, loss?: number } = {}
        await this.work(job.evaluate(frame.ids, frame.x, out))
        return out.x != null
          ? { type: TrainFrameType.ACTIVATIONS, job: frame.job, step: frame.step, micro: frame.micro, x: out.x }
          : { type: TrainFrameType.LOSS, job: frame.job, step: frame.step, micro: frame.micro, loss: out.loss as number }
      }
      case TrainFrameType.BACKWARD: {
        const job = this.jobOf(frame.job, streamJob)
        const out: { x?: F32Tensor } = {}
        await this.work(job.backward(frame.step, frame.micro, frame.x, out))
        if (this.faults != null && garbageAt(this.faults, frame.step)) {
          corruptInPlace(this.faults, (out.x as F32Tensor).data, frame.step, frame.micro)
        }
        return { type: TrainFrameType.GRADIENT, job: frame.job, step: frame.step, micro: frame.micro, x: out.x as F32Tensor }
      }
      case TrainFrameType.SUM_SQUARES: {
        const job = this.jobOf(frame.job, streamJob)
        if (this.faults != null && garbageAt(this.faults, frame.step) && job.step === frame.step) {
          corruptGradients(this.faults, job.stage.params, frame.step)
        }
        return { type: TrainFrameType.SQUARES, job: frame.job, step: frame.step, value: job.sumSquares(frame.step, frame.value) }
      }
      case TrainFrameType.STEP: {
        const job = this.jobOf(frame.job, streamJob)
        let clip = 1
        // the optimizer update is one unit too: it waits for inference like the layers
        await this.work((function * () { clip = job.applyStep(frame.step, frame.value); yield 'optimizer' })())
        return { type: TrainFrameType.STEPPED, job: frame.job, step: frame.step, value: clip }
      }
      case TrainFrameType.FETCH_PARAMS: {
        const job = this.jobOf(frame.job, streamJob)
        const tensors = [...job.stage.candidate()].map(([name, data]) => ({ name, data }))
        return { type: TrainFrameType.PARAMS, job: frame.job, tensors }
      }
      case TrainFrameType.FETCH_STATE: {
        const state = this.jobOf(frame.job, streamJob).exportState()
        this.stats.statesSent++
        return { type: TrainFrameType.STATE, job: frame.job, ...state }
      }
      case TrainFrameType.LOAD_STATE: {
        this.jobOf(frame.job, streamJob).loadState(frame.step, frame.tensors)
        this.stats.statesLoaded++
        return { type: TrainFrameType.LOADED, job: frame.job, step: frame.step }
      }
      case TrainFrameType.CLOSE:
        this.jobOf(frame.job, streamJob)
        this.closeJob(frame.job)
        return { type: TrainFrameType.CLOSED, job: frame.job }
      default:
        throw refuse(TrainWireError.BAD_REQUEST, `frame type ${frame.type} is not a request`)
    }
  }

  private async openJob (f: OpenJobFrame): Promise<void> {
    if (f.job.length === 0 || this.jobs.has(f.job)) {
      throw refuse(TrainWireError.BAD_REQUEST, `job id ${JSON.stringify(f.job)} is empty or already open here`)
    }
    if (this.jobs.size >= this.init.maxJobs) {
      throw refuse(TrainWireError.BUSY, `this stage hosts ${this.jobs.size} jobs, its bound`)
    }
    if (f.batch < 1 || !(f.lr > 0) || !Number.isFinite(f.lr) || f.end <= f.start) {
      throw refuse(TrainWireError.BAD_REQUEST, `bad job options (batch ${f.batch}, lr ${f.lr}, layers [${f.start}, ${f.end}))`)
    }
    let w: TrainWeights | null
    try {
      w = await this.init.weights(f.model, f.version, { start: f.start, end: f.end, head: (f.flags & OpenJobFlags.HEAD) !== 0 })
    } catch (err) {
      throw refuse(TrainWireError.WRONG_MODEL, `model ${f.model} (version ${f.version === '' ? 'live' : f.version}) is not served here - ${(err as Error).message}`)
    }
    if (w == null) {
      throw refuse(TrainWireError.WRONG_MODEL, `model ${f.model} (version ${f.version === '' ? 'live' : f.version}) is not served here`)
    }
    if (this.jobs.size >= this.init.maxJobs || this.jobs.has(f.job)) {
      throw refuse(TrainWireError.BUSY, `this stage hosts ${this.jobs.size} jobs, its bound`)
    }
    const targets = PROJECTION_BITS.filter((_, i) => (f.targets & (1 << i)) !== 0) as Projection[]
    const stage = new TrainStage({
      config: w.config,
      weights: w.weights,
      start: f.start,
      end: f.end,
      embedding: false,
      head: (f.flags & OpenJobFlags.HEAD) !== 0,
      seed: f.seed,
      mode: { full: (f.flags & OpenJobFlags.FULL) !== 0, rank: f.rank, alpha: f.alpha, targets: PROJECTIONS.filter(p => targets.includes(p)) }
    })
    const optimizer = { ...ADAMW_DEFAULTS, lr: f.lr, beta1: f.beta1, beta2: f.beta2, eps: f.eps, weightDecay: f.weightDecay, clip: f.clip, warmup: f.warmup }
    this.jobs.set(f.job, new TrainStageJob({ id: f.job, stage, optimizer, batch: f.batch, maxBytes: this.init.maxJobBytes }))
    this.stats.jobsOpened++
    this.stats.jobsActive = this.jobs.size
  }

  private closeJob (id: string): void {
    const job = this.jobs.get(id)
    if (job != null) {
      this.jobs.delete(id)
      job.dispose()
      this.stats.jobsActive = this.jobs.size
    }
  }
}

export function createTrainStageService (components: TrainStageServiceComponents, init: TrainStageServiceInit): TrainStageService {
  return new TrainStageService(components, init)
}
