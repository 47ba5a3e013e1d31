/**
 * The record of a daemon's training jobs (status' `learning.training` and the
 * dashboard's `training` section): the last `maxJobs` jobs, each with a loss
 * curve of at most `maxPoints` points. Entries change only through this
 * class, in the order the job reports (queued, steps and evals, then done or
 * failed); nothing here is persisted: a restarted daemon starts empty.
 */
import type { TrainJobJson, TrainParams, TrainResultJson } from '../../protocols/ipc-learning.ts'

export interface TrainJobLogInit {
  /** jobs kept, oldest dropped first (default 8) */
  maxJobs?: number
  /** points of one loss curve (default 512; even) */
  maxPoints?: number
  now?(): number
}

export const TRAIN_JOB_LOG_DEFAULTS = { maxJobs: 8, maxPoints: 512 } as const

export class TrainJobLog {
  private readonly entries: TrainJobJson[]
  private readonly maxJobs: number
  private readonly maxPoints: number
  private readonly now: () => number
  private nextId: number

  constructor (init: TrainJobLogInit = {}) {
    this.entries = []
    this.maxJobs = init.maxJobs ?? TRAIN_JOB_LOG_DEFAULTS.maxJobs
    this.maxPoints = Math.max(2, (init.maxPoints ?? TRAIN_JOB_LOG_DEFAULTS.maxPoints) & ~1)
    this.now = init.now ?? Date.now
    this.nextId = 1
  }

  /** A job asked for: queued until the one before it ends. */
  queue (params: Pick<TrainParams, 'model' | 'dataset' | 'steps'>): TrainJobJson {
    const job: TrainJobJson = {
      id: this.nextId++,
      model: params.model ?? null,
      dataset: params.dataset,
      state: 'queued',
      steps: params.steps,
      step: 0,
      losses: [],
      lossStride: 1,
      evalLosses: [],
      tokensPerSecond: null,
      proposalId: null,
      error: null,
      queuedAt: this.now(),
      endedAt: null
    }
    this.entries.push(job)
    if (this.entries.length > this.maxJobs) {
      this.entries.splice(0, this.entries.length - this.maxJobs)
    }
    return job
  }

  /** A step done: its mean loss joins the curve when the step is on the stride. */
  step (job: TrainJobJson, s: { step: number, loss: number, tokensPerSecond: number }): void {
    job.state = 'running'
    job.step = s.step
    job.tokensPerSecond = s.tokensPerSecond
    if (s.step % job.lossStride !== 0) {
      return
    }
    job.losses.push(s.loss)
    if (job.losses.length >= this.maxPoints) {
      // keep steps 2k x stride: the curve stays evenly spaced at twice the stride
      job.losses = job.losses.filter((_, i) => i % 2 === 1)
      job.lossStride *= 2
    }
  }

  evaluated (job: TrainJobJson, step: number, loss: number): void {
    job.state = 'running'
    job.evalLosses.push({ step, loss })
  }

  done (job: TrainJobJson, result: TrainResultJson): void {
    job.state = 'done'
    job.tokensPerSecond = result.tokensPerSecond
    job.proposalId = result.proposalId
    job.endedAt = this.now()
  }

  failed (job: TrainJobJson, err: unknown): void {
    job.state = 'failed'
    job.error = err instanceof Error ? err.message : String(err)
    job.endedAt = this.now()
  }

  /** Copies of the jobs kept, oldest first. */
  jobs (): TrainJobJson[] {
    return this.entries.map(j => ({ ...j, losses: [...j.losses], evalLosses: j.evalLosses.map(e => ({ ...e })) }))
  }
}
