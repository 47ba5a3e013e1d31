/**
 * The messages between a node and its training thread (train-thread.ts,
 * train-worker.ts): one job per thread; the node sends the job's data at
 * start (workerData) and `abort`; the thread answers `started` (its OS
 * thread id and nice value), `unit` after each work unit (its scheduler's
 * counters), `step` and `eval` as the job goes, then `done` or `failed`.
 * The node's busy() travels as one Int32 in a SharedArrayBuffer (1: busy).
 */
import type { JobData, JobOutcome } from './job-run.ts'
import type { StepReport } from './job.ts'

export interface TrainThreadData {
  job: JobData
  /** Int32Array view: [0] = 1 while the node's inference runs */
  busy: SharedArrayBuffer
  busyPollMs?: number
  maxDeferMs?: number
  /** the OS nice value the thread sets for itself (null: leave it) */
  nice: number | null
  /** the tfjs backend to start (the node's) */
  backend: string
}

export interface SchedulerCounters {
  units: number
  unitMs: number
  maxUnitMs: number
  unitCpuMs: number
  deferrals: number
}

export type TrainThreadMessage =
  | { kind: 'started', tid: number | null, nice: number | null }
  | { kind: 'unit', counters: SchedulerCounters }
  | { kind: 'step', report: StepReport & { steps: number, tokensPerSecond: number } }
  | { kind: 'eval', step: number, loss: number }
  | { kind: 'done', outcome: JobOutcome, counters: SchedulerCounters }
  | { kind: 'failed', code: string, message: string }

export type TrainThreadCommand = { kind: 'abort' }
