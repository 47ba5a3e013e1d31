/**
 * The micro-step scheduler of a serving node: training runs as small work
 * units (one layer x one micro-batch, forward or backward, or one optimizer
 * update), and inference always goes first. Before each unit, every
 * inference task queued by then runs to its end (in submission order; a
 * task queued meanwhile waits for the next boundary, so training keeps at
 * least one unit per round);
 * after each unit the scheduler yields to the event loop (setImmediate) so
 * requests arriving on sockets get queued before the next unit. A unit is
 * never interrupted: the training state only changes inside units, and an
 * inference task must not touch it, so a job's result does not depend on
 * how often or when it was preempted.
 *
 * Interference: an inference task (queued, or seen through busy()) that
 * arrives while a unit runs waits for the rest of that one unit and never
 * longer (`maxUnitsWaited` counts it for queued tasks: at most 1). A unit's
 * duration is the layer x micro-batch's, set by the job's sequence length
 * and the layer's width; the scheduler reports it (`unitMs`, `maxUnitMs`)
 * and the CPU the units used on this thread (`unitCpuMs`), so a node sees
 * what a first inference step may wait and how much of its idle CPU
 * training used (bench/train --interference measures both).
 */
import { performance } from 'node:perf_hooks'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import { TrainError, TrainErrorCode } from './errors.ts'

/** CPU time of the calling thread in ms (process.threadCpuUsage, Node >= 23.9), else the process's. */
export function threadCpuMs (): number {
  const u = typeof process.threadCpuUsage === 'function' ? process.threadCpuUsage() : process.cpuUsage()
  return (u.user + u.system) / 1000
}

export interface MicroStepSchedulerInit {
  /**
   * True while inference the scheduler does not queue is running (a
   * daemon's generations and served sessions): before each unit the
   * scheduler waits while it holds, polling every `busyPollMs`, at most
   * `maxDeferMs` per unit (so a session left open cannot stop a job).
   */
  busy?(): boolean
  busyPollMs?: number
  maxDeferMs?: number
}

export const SCHEDULER_DEFAULTS = { busyPollMs: 5, maxDeferMs: 2000 } as const

interface Task {
  /** units run when it was queued */
  queuedAt: number
  run(): unknown
  resolve(v: any): void
  reject(e: unknown): void
}

export class MicroStepScheduler {
  private readonly queue: Task[]
  /** inference tasks run between two training units */
  preemptions: number
  /** training units run */
  units: number
  /** units that waited for busy() inference, and the ms waited */
  deferrals: number
  deferredMs: number
  /** wall ms inside units, the longest unit, and the CPU ms this thread used inside units */
  unitMs: number
  maxUnitMs: number
  unitCpuMs: number
  /** the most units a queued inference task saw start between its queueing and its run (the rule: at most 1) */
  maxUnitsWaited: number
  private readonly init: MicroStepSchedulerInit

  constructor (init: MicroStepSchedulerInit = {}) {
    this.queue = []
    this.preemptions = 0
    this.units = 0
    this.deferrals = 0
    this.deferredMs = 0
    this.unitMs = 0
    this.maxUnitMs = 0
    this.unitCpuMs = 0
    this.maxUnitsWaited = 0
    this.init = init
  }

  /** Waits while busy() (at most maxDeferMs). */
  private async defer (signal?: AbortSignal): Promise<void> {
    const busy = this.init.busy
    if (busy == null || !busy()) {
      return
    }
    const start = performance.now()
    const max = this.init.maxDeferMs ?? SCHEDULER_DEFAULTS.maxDeferMs
    this.deferrals++
    while (busy() && performance.now() - start < max && signal?.aborted !== true) {
      await sleep(this.init.busyPollMs ?? SCHEDULER_DEFAULTS.busyPollMs)
    }
    this.deferredMs += Math.round(performance.now() - start)
  }

  /** Queues an inference task: it runs before the next training unit. */
  async inference<T> (run: () => T | Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ queuedAt: this.units, run, resolve, reject })
    })
  }

  /**
   * Runs the inference tasks queued by now, in order (a task queued while
   * they run waits for the next boundary: training still gets one unit
   * between two rounds, so a steady stream of requests cannot starve a job).
   */
  private async drain (): Promise<void> {
    for (let n = this.queue.length; n > 0; n--) {
      const task = this.queue.shift() as Task
      this.preemptions++
      this.maxUnitsWaited = Math.max(this.maxUnitsWaited, this.units - task.queuedAt)
      try {
        task.resolve(await task.run())
      } catch (err) {
        task.reject(err)
      }
    }
  }

  /** Runs the units of `job` (one per next()), inference first before each. */
  async run (job: Iterator<unknown>, signal?: AbortSignal): Promise<void> {
    try {
      await this.runUnits(job, signal)
    } catch (err) {
      // an aborted job's generator is ended, so what it holds is freed (its finally blocks run)
      job.return?.()
      throw err
    }
  }

  private async runUnits (job: Iterator<unknown>, signal?: AbortSignal): Promise<void> {
    for (;;) {
      await this.drain()
      await this.defer(signal)
      if (signal?.aborted === true) {
        throw new TrainError(TrainErrorCode.ABORTED, 'the training job was aborted', { cause: signal.reason })
      }
      const t0 = performance.now()
      const c0 = threadCpuMs()
      const r = job.next()
      const ms = performance.now() - t0
      // the job's code after its last unit counts as training time too
      this.unitMs += ms
      this.unitCpuMs += threadCpuMs() - c0
      if (r.done === true) {
        break
      }
      this.units++
      this.maxUnitMs = Math.max(this.maxUnitMs, ms)
      await yieldToLoop()
    }
    await this.drain()
  }
}
