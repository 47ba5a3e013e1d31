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
 */
import { performance } from 'node:perf_hooks'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import { TrainError, TrainErrorCode } from './errors.ts'

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
  private readonly init: MicroStepSchedulerInit

  constructor (init: MicroStepSchedulerInit = {}) {
    this.queue = []
    this.preemptions = 0
    this.units = 0
    this.deferrals = 0
    this.deferredMs = 0
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
      this.queue.push({ run, resolve, reject })
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
      try {
        task.resolve(await task.run())
      } catch (err) {
        task.reject(err)
      }
    }
  }

  /** Runs the units of `job` (one per next()), inference first before each. */
  async run (job: Iterator<unknown>, signal?: AbortSignal): Promise<void> {
    for (;;) {
      await this.drain()
      await this.defer(signal)
      if (signal?.aborted === true) {
        throw new TrainError(TrainErrorCode.ABORTED, 'the training job was aborted', { cause: signal.reason })
      }
      const r = job.next()
      if (r.done === true) {
        break
      }
      this.units++
      await yieldToLoop()
    }
    await this.drain()
  }
}
