/**
 * A training job in its own thread: the node's side of train-worker.ts.
 * The thread lowers its OS priority (nice 19 by default), so when the
 * node's inference wants the core a unit in flight is preempted by the OS
 * at once, instead of the request waiting for the unit to end as it does
 * when the trainer shares the node's thread; between units it still waits
 * while the node's busy() holds (copied every `busyPollMs` into a shared
 * flag), as MicroStepScheduler's rule says. The job's inputs are copied to
 * the thread (structured clone: the weights are in memory twice while the
 * job runs, the caller's and the thread's) and its outcome, the trained
 * weights included, copied back; the
 * same runJob runs there, so the result is the same bits as on the node's
 * thread. Ordering: hooks are called in the thread's order (steps, evals);
 * the promise settles after the thread's last message; the thread is ended
 * when it settles, whatever happened.
 */
import { Worker } from 'node:worker_threads'
import { tf } from '../../model/qwen3/tf.ts'
import { TRAIN_THREAD_DEFAULTS } from './constants.ts'
import { TrainError, TrainErrorCode } from './errors.ts'
import type { TrainErrorCodeValue } from './errors.ts'
import type { JobData, JobHooks, JobOutcome } from './job-run.ts'
import type { SchedulerCounters, TrainThreadData, TrainThreadMessage } from './train-protocol.ts'

export interface TrainThreadOptions {
  /** true while the node's inference runs (the daemon's generations and served sessions) */
  busy?(): boolean
  /** ms between two copies of busy() to the thread (default TRAIN_THREAD_DEFAULTS.busyPollMs) */
  busyPollMs?: number
  /** MicroStepScheduler's maxDeferMs in the thread */
  maxDeferMs?: number
  /** the OS nice value of the thread (default 19; null: the node's) */
  nice?: number | null
  /** told the thread's OS id and nice value once it runs */
  onStarted?(info: { tid: number | null, nice: number | null }): void
  /** the thread's scheduler counters after each unit */
  onUnit?(counters: SchedulerCounters): void
  signal?: AbortSignal
}

const WORKER_URL = new URL('./train-worker.ts', import.meta.url)

/** Runs `job` in a training thread (see the file comment). */
export async function runJobInThread (job: JobData, hooks: JobHooks, options: TrainThreadOptions = {}): Promise<JobOutcome> {
  options.signal?.throwIfAborted()
  const busy = new SharedArrayBuffer(4)
  const flag = new Int32Array(busy)
  const data: TrainThreadData = {
    job,
    busy,
    busyPollMs: options.busyPollMs ?? TRAIN_THREAD_DEFAULTS.busyPollMs,
    ...(options.maxDeferMs != null ? { maxDeferMs: options.maxDeferMs } : {}),
    nice: options.nice === undefined ? TRAIN_THREAD_DEFAULTS.nice : options.nice,
    backend: tf.getBackend()
  }
  const worker = new Worker(WORKER_URL, { workerData: data })
  const poll = options.busy != null
    ? setInterval(() => { Atomics.store(flag, 0, options.busy?.() === true ? 1 : 0) }, data.busyPollMs)
    : undefined
  poll?.unref()
  const onAbort = (): void => { worker.postMessage({ kind: 'abort' }) }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await new Promise<JobOutcome>((resolve, reject) => {
      worker.on('message', (m: TrainThreadMessage) => {
        switch (m.kind) {
          case 'started': options.onStarted?.({ tid: m.tid, nice: m.nice }); break
          case 'unit': options.onUnit?.(m.counters); break
          case 'step': hooks.onStep?.(m.report); break
          case 'eval': hooks.onEval?.(m.step, m.loss); break
          case 'done': resolve(m.outcome); break
          case 'failed': {
            const known = Object.values(TrainErrorCode).includes(m.code as TrainErrorCodeValue)
            reject(new TrainError(known ? m.code as TrainErrorCodeValue : TrainErrorCode.THREAD, m.message))
            break
          }
          default:
            reject(new TrainError(TrainErrorCode.THREAD, `the training thread sent an unknown message ${JSON.stringify((m as { kind?: unknown }).kind)}`))
        }
      })
      worker.on('error', err => { reject(new TrainError(TrainErrorCode.THREAD, `the training thread failed: ${err.message}`, { cause: err })) })
      worker.on('exit', code => { reject(new TrainError(TrainErrorCode.THREAD, `the training thread exited (code ${code}) before the job ended`)) })
    })
  } finally {
    clearInterval(poll)
    options.signal?.removeEventListener('abort', onAbort)
    await worker.terminate()
  }
}
