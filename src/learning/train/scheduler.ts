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
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { TrainError, TrainErrorCode } from './errors.ts'

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

  constructor () {
    this.queue = []
    this.preemptions = 0
    this.units = 0
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
