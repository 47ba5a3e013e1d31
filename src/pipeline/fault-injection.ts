/**
 * FAULT INJECTION FOR TESTS ONLY. Off unless the environment asks for it.
 *
 * The failover tests need stages that are slow (so a kill lands in the
 * middle of a generation, or to stand in for a bigger model), stages that
 * become slower, and stages that answer garbage. A daemon reads these
 * switches from its environment once, at start, and the stage server logs a
 * warning when any is on:
 * - BLYD_TEST_STEP_DELAY_MS=N: every step takes N ms longer, counted as
 * compute (the stage's stats and announced throughput show it, as a slower
 * stage's would)
 * - BLYD_TEST_CORRUPT_RESULTS=N: from the N-th step computed on, send
 * RESULT frames of the right shape filled with NaN
 * - BLYD_TEST_CORRUPT_ON_SIGNAL=SIGUSR2 (or SIGUSR1): once the daemon gets
 * that signal, every later RESULT is NaN-filled (lets a test corrupt
 * whichever stage a generation happens to use, at the moment it chooses)
 * - BLYD_TEST_SLOW_ON_SIGNAL=SIGUSR1 (or SIGUSR2), BLYD_TEST_SLOW_FACTOR=F
 * (default 3): once the daemon gets that signal, every later step takes F
 * times as long (a healthy stage that became slower: more load, a
 * throttled host)
 * Never set them on a node that serves anyone.
 */
import { setTimeout as sleep } from 'node:timers/promises'

type FaultSignal = 'SIGUSR1' | 'SIGUSR2'

export interface StageFaults {
  /** ms every step takes longer (counted as compute) */
  stepDelayMs?: number
  /** from this step on (1 = the first), RESULT values are NaN */
  corruptFromStep?: number
  /** on this signal, set corruptFromStep to 1 (every later RESULT is NaN); see armFaultSignal */
  corruptOnSignal?: FaultSignal
  /** every step takes this many times as long (the delay included) */
  slowFactor?: number
  /** on this signal, set slowFactor to slowOnSignalFactor (default 3); see armFaultSignal */
  slowOnSignal?: FaultSignal
  slowOnSignalFactor?: number
}

const DEFAULT_SLOW_FACTOR = 3

function positiveInt (raw: string | undefined): number | undefined {
  if (raw == null || raw.trim() === '') {
    return undefined
  }
  const n = Number(raw)
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

function signalOf (raw: string | undefined): FaultSignal | undefined {
  return raw === 'SIGUSR1' || raw === 'SIGUSR2' ? raw : undefined
}

/** The switches set in `env`, or undefined when none is. */
export function stageFaultsFromEnv (env: Record<string, string | undefined>): StageFaults | undefined {
  const stepDelayMs = positiveInt(env.BLYD_TEST_STEP_DELAY_MS)
  const corruptFromStep = positiveInt(env.BLYD_TEST_CORRUPT_RESULTS)
  const corruptOnSignal = signalOf(env.BLYD_TEST_CORRUPT_ON_SIGNAL)
  const slowOnSignal = signalOf(env.BLYD_TEST_SLOW_ON_SIGNAL)
  const slowOnSignalFactor = positiveInt(env.BLYD_TEST_SLOW_FACTOR)
  if (stepDelayMs == null && corruptFromStep == null && corruptOnSignal == null && slowOnSignal == null) {
    return undefined
  }
  return {
    ...(stepDelayMs != null ? { stepDelayMs } : {}),
    ...(corruptFromStep != null ? { corruptFromStep } : {}),
    ...(corruptOnSignal != null ? { corruptOnSignal } : {}),
    ...(slowOnSignal != null ? { slowOnSignal, slowOnSignalFactor: slowOnSignalFactor ?? DEFAULT_SLOW_FACTOR } : {})
  }
}

/**
 * Listen for `faults.corruptOnSignal` and `faults.slowOnSignal` on `proc`
 * and, when one comes, make every later RESULT NaN / every later step
 * slower (the stage server reads `faults` at each step). Returns the
 * function that removes the listeners; a no-op when no signal is
 * configured.
 */
export function armFaultSignal (faults: StageFaults | undefined, proc: Pick<NodeJS.Process, 'on' | 'off'>): () => void {
  if (faults == null) {
    return () => {}
  }
  const armed: Array<[FaultSignal, () => void]> = []
  if (faults.corruptOnSignal != null) {
    armed.push([faults.corruptOnSignal, () => { faults.corruptFromStep = 1 }])
  }
  if (faults.slowOnSignal != null) {
    armed.push([faults.slowOnSignal, () => { faults.slowFactor = faults.slowOnSignalFactor ?? DEFAULT_SLOW_FACTOR }])
  }
  for (const [signal, listener] of armed) {
    proc.on(signal, listener)
  }
  return () => {
    for (const [signal, listener] of armed) {
      proc.off(signal, listener)
    }
  }
}

/**
 * FAULT INJECTION FOR TESTS ONLY: what the stage server runs on every step.
 * Reads `faults` at every step, so armFaultSignal's changes take effect on
 * the next one.
 */
export class StageFaultInjector {
  readonly faults: StageFaults

  constructor (faults: StageFaults) {
    this.faults = faults
  }

  /**
   * Makes a step that has computed for `computedMs` so far take longer:
   * stepDelayMs more, then all of it slowFactor times as long. The stage
   * counts this as compute.
   */
  async slow (computedMs: number): Promise<void> {
    const { stepDelayMs, slowFactor } = this.faults
    const delayed = computedMs + (stepDelayMs ?? 0)
    const ms = (stepDelayMs ?? 0) + (slowFactor != null && slowFactor > 1 ? delayed * (slowFactor - 1) : 0)
    if (ms > 0) {
      await sleep(ms)
    }
  }

  /** The RESULT of the `step`-th step computed (1 = the first): NaN-filled once corruptFromStep is reached. */
  corrupt (out: Float32Array, step: number): Float32Array {
    const { corruptFromStep } = this.faults
    if (corruptFromStep != null && step >= corruptFromStep) {
      return new Float32Array(out.length).fill(NaN)
    }
    return out
  }
}
