/**
 * The training thread's entry (see train-thread.ts and train-protocol.ts):
 * lowers its own OS priority (on Linux the nice value is per thread, so
 * the node's other threads keep theirs), starts the node's tfjs backend,
 * runs the job with runJob on a MicroStepScheduler whose busy() reads the
 * node's flag, and posts its progress and its outcome.
 */
import { readFileSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { selectBackend } from '../../model/backend.ts'
import { runJob } from './job-run.ts'
import { MicroStepScheduler } from './scheduler.ts'
import type { SchedulerCounters, TrainThreadCommand, TrainThreadData, TrainThreadMessage } from './train-protocol.ts'
import type { BackendPreference } from '../../model/backend.ts'

const port = parentPort
if (port == null) {
  throw new Error('train-worker.ts runs as a worker thread')
}
const data = workerData as TrainThreadData
const post = (m: TrainThreadMessage): void => { port.postMessage(m) }

/** this thread's OS id (Linux), for per-thread CPU accounting by the node */
function threadId (): number | null {
  try {
    return Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0])
  } catch {
    return null
  }
}

function niceTo (nice: number | null): number | null {
  if (nice == null) {
    return null
  }
  try {
    setPriority(nice)
    return getPriority()
  } catch {
    return null
  }
}

const controller = new AbortController()
port.on('message', (c: TrainThreadCommand) => {
  if (c.kind === 'abort') {
    controller.abort()
  }
})

const flag = new Int32Array(data.busy)
const scheduler = new MicroStepScheduler({
  busy: () => Atomics.load(flag, 0) === 1,
  ...(data.busyPollMs != null ? { busyPollMs: data.busyPollMs } : {}),
  ...(data.maxDeferMs != null ? { maxDeferMs: data.maxDeferMs } : {})
})
const counters = (): SchedulerCounters => ({ units: scheduler.units, unitMs: scheduler.unitMs, maxUnitMs: scheduler.maxUnitMs, unitCpuMs: scheduler.unitCpuMs, deferrals: scheduler.deferrals })

try {
  post({ kind: 'started', tid: threadId(), nice: niceTo(data.nice) })
  await selectBackend(data.backend as BackendPreference)
  let units = 0
  const outcome = await runJob(data.job, scheduler, {
    onStep: report => { post({ kind: 'step', report }) },
    onEval: (step, loss) => { post({ kind: 'eval', step, loss }) },
    onUnit: () => {
      if (scheduler.units !== units) {
        units = scheduler.units
        post({ kind: 'unit', counters: counters() })
      }
    }
  }, controller.signal)
  post({ kind: 'done', outcome, counters: counters() })
} catch (err: any) {
  post({ kind: 'failed', code: typeof err?.code === 'string' ? err.code : '', message: err?.message ?? String(err) })
} finally {
  port.close()
}
