/**
 * FAULT INJECTION FOR TESTS ONLY (the train stage's counterpart of
 * src/pipeline/fault-injection.ts). Off unless the environment or the
 * service's init asks for it; the train stage service logs a warning when
 * any is on. The fault tests of pipeline-parallel training (issue 12 item 4)
 * need a real stage that is slow enough for a kill to land inside a job, and
 * a real stage that answers finite garbage gradients:
 * - BLYD_TEST_TRAIN_UNIT_DELAY_MS=N: every FORWARD, BACKWARD and EVAL is
 * answered N ms later
 * - BLYD_TEST_TRAIN_GARBAGE_FROM_STEP=N: from the job's step N on, the
 * stage's gradients are garbage: the input gradient it answers (GRADIENT)
 * and its own tensors' gradients (so its SQUARES and, were the step
 * applied, its update)
 * - BLYD_TEST_TRAIN_GARBAGE=scale|random (default scale): scale multiplies
 * them by BLYD_TEST_TRAIN_GARBAGE_SCALE (default 1000); random replaces
 * them with uniform values in [-1, 1) (seeded by the step: the same
 * garbage every time)
 * - BLYD_TEST_TRAIN_GARBAGE_ON_SIGNAL=SIGUSR2 (or SIGUSR1): once the daemon
 * gets that signal, every later gradient is garbage (lets a test corrupt
 * whichever holder a job happens to use, at the moment it chooses;
 * armTrainFaultSignal)
 * Never set them on a node that serves anyone.
 */
import { Prng } from '../../model/prng.ts'
import type { TrainParam } from '../../learning/train/param.ts'

export interface TrainStageFaults {
  /** ms every FORWARD, BACKWARD and EVAL answer is delayed */
  unitDelayMs?: number
  /** from this step of a job on (1 = the first), the stage's gradients are garbage */
  garbageFromStep?: number
  /** scale (default): the gradients times `garbageScale`; random: uniform in [-1, 1) */
  garbage?: 'scale' | 'random'
  /** default 1000 */
  garbageScale?: number
  /** on this signal, set garbageFromStep to 1 (every later gradient is garbage); see armTrainFaultSignal */
  garbageOnSignal?: 'SIGUSR1' | 'SIGUSR2'
}

const DEFAULT_GARBAGE_SCALE = 1000

function positive (raw: string | undefined): number | undefined {
  if (raw == null || raw.trim() === '') {
    return undefined
  }
  const n = Number(raw)
  return Number.isFinite(n) && n > 0 ? n : undefined
}

/** The switches set in `env`, or undefined when none is. */
export function trainFaultsFromEnv (env: Record<string, string | undefined>): TrainStageFaults | undefined {
  const unitDelayMs = positive(env.BLYD_TEST_TRAIN_UNIT_DELAY_MS)
  const garbageFromStep = positive(env.BLYD_TEST_TRAIN_GARBAGE_FROM_STEP)
  const signal = env.BLYD_TEST_TRAIN_GARBAGE_ON_SIGNAL
  const garbageOnSignal = signal === 'SIGUSR1' || signal === 'SIGUSR2' ? signal : undefined
  if (unitDelayMs == null && garbageFromStep == null && garbageOnSignal == null) {
    return undefined
  }
  const scale = positive(env.BLYD_TEST_TRAIN_GARBAGE_SCALE)
  return {
    ...(unitDelayMs != null ? { unitDelayMs } : {}),
    ...(garbageOnSignal != null ? { garbageOnSignal, garbage: env.BLYD_TEST_TRAIN_GARBAGE === 'random' ? 'random' as const : 'scale' as const } : {}),
    ...(garbageFromStep != null ? { garbageFromStep: Math.floor(garbageFromStep), garbage: env.BLYD_TEST_TRAIN_GARBAGE === 'random' ? 'random' as const : 'scale' as const } : {}),
    ...(scale != null ? { garbageScale: scale } : {})
  }
}

/**
 * Listens for `faults.garbageOnSignal` on `proc`: when it comes, every later
 * gradient of the stage is garbage (the service reads `faults` at every
 * request). Returns the function that removes the listener; a no-op when no
 * signal is configured.
 */
export function armTrainFaultSignal (faults: TrainStageFaults | undefined, proc: Pick<NodeJS.Process, 'on' | 'off'>): () => void {
  const signal = faults?.garbageOnSignal
  if (faults == null || signal == null) {
    return () => {}
  }
  const listener = (): void => { faults.garbageFromStep = 1 }
  proc.on(signal, listener)
  return () => { proc.off(signal, listener) }
}

/** True when the stage answers garbage at `step`. */
export function garbageAt (faults: TrainStageFaults | undefined, step: number): boolean {
  return faults?.garbageFromStep != null && step >= faults.garbageFromStep
}

/** `a` made garbage in place (see the file comment); `salt` varies the random values between tensors. */
export function corruptInPlace (faults: TrainStageFaults, a: Float32Array, step: number, salt: number): void {
  if (faults.garbage === 'random') {
    const rng = new Prng((step * 7919 + salt * 104729) >>> 0)
    for (let i = 0; i < a.length; i++) {
      a[i] = 2 * rng.next() - 1
    }
    return
  }
  const s = faults.garbageScale ?? DEFAULT_GARBAGE_SCALE
  for (let i = 0; i < a.length; i++) {
    a[i] *= s
  }
}

/** The accumulated gradients of `params` made garbage (before the stage sums their squares). */
export function corruptGradients (faults: TrainStageFaults, params: readonly TrainParam[], step: number): void {
  params.forEach((p, i) => { corruptInPlace(faults, p.grad, step, 1000 + i) })
}
