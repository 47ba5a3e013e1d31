/**
 * One whole-model training job run to its end on a MicroStepScheduler: a
 * TrainStage over the given weights, the eval loss before, every
 * `evalEvery` steps and after (evalUnits), the steps (TrainJob.units), and
 * with `candidate` the trained weights. The same function runs on the
 * node's main thread (trainLocal) and in a training thread
 * (train-worker.ts), so both give the same bits for the same inputs.
 * The stage is freed when it returns or throws.
 */
import { performance } from 'node:perf_hooks'
import { DataOrder } from './data-order.ts'
import { TrainJob } from './job.ts'
import { TrainStage } from './stage.ts'
import type { StepReport } from './job.ts'
import type { MicroStepScheduler } from './scheduler.ts'
import type { TrainMode } from './stage.ts'
import type { Qwen3Config } from '../../model/qwen3/config.ts'

/** What a job needs: plain data (it crosses to a training thread). */
export interface JobData {
  config: Qwen3Config
  /** the live weights, f32 by checkpoint name (stored layouts) */
  weights: Map<string, Float32Array>
  /** training sequences (DataOrder shuffles them by the seed) */
  train: Uint32Array[]
  /** eval sequences */
  held: Uint32Array[]
  mode: TrainMode
  seed: number
  steps: number
  batch: number
  lr: number
  /** warm-up steps (already capped at steps) */
  warmup: number
  /** 0: eval before and after only */
  evalEvery: number
  /** return the trained weights (to propose them) */
  candidate: boolean
}

export interface JobHooks {
  onStep?(r: StepReport & { steps: number, tokensPerSecond: number }): void
  onEval?(step: number, loss: number): void
  /** called before each unit after the first (the previous one ended) */
  onUnit?(): void
}

export interface JobOutcome {
  losses: number[]
  before: number
  after: number
  tokensPerSecond: number
  candidate: Map<string, Float32Array> | null
}

/** Runs the job of `d` on `scheduler` (see the file comment). */
export async function runJob (d: JobData, scheduler: MicroStepScheduler, hooks: JobHooks = {}, signal?: AbortSignal): Promise<JobOutcome> {
  const stage = new TrainStage({ config: d.config, weights: d.weights, start: 0, end: d.config.numLayers, embedding: true, head: true, seed: d.seed, mode: d.mode })
  try {
    const job = new TrainJob({ stage, data: new DataOrder(d.train, d.seed), steps: d.steps, batch: d.batch, optimizer: { lr: d.lr, warmup: d.warmup } })
    const before = { loss: NaN }
    const after = { loss: NaN }
    let trainMs = 0
    let evalDue = 0
    const units = function * (): Generator<string, void, void> {
      yield * job.evalUnits(d.held, before)
      hooks.onEval?.(0, before.loss)
      const it = job.units(r => {
        if (d.evalEvery > 0 && r.step % d.evalEvery === 0 && r.step < d.steps) {
          evalDue = r.step
        }
        hooks.onStep?.({ ...r, steps: d.steps, tokensPerSecond: job.tokens / Math.max(trainMs, 1e-3) * 1000 })
      })
      for (;;) {
        const t0 = performance.now()
        const r = it.next()
        trainMs += performance.now() - t0
        if (r.done === true) {
          break
        }
        yield r.value
        if (evalDue > 0) {
          const mid = { loss: NaN }
          yield * job.evalUnits(d.held, mid)
          hooks.onEval?.(evalDue, mid.loss)
          evalDue = 0
        }
      }
      yield * job.evalUnits(d.held, after)
      hooks.onEval?.(d.steps, after.loss)
    }
    const counted = function * (): Generator<string, void, void> {
      for (const u of units()) {
        yield u
        hooks.onUnit?.()
      }
    }
    await scheduler.run(counted(), signal)
    return {
      losses: [...job.losses],
      before: before.loss,
      after: after.loss,
      tokensPerSecond: job.tokens / Math.max(trainMs, 1e-3) * 1000,
      candidate: d.candidate ? stage.candidate() : null
    }
  } finally {
    stage.dispose()
  }
}
