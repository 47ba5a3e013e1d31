/**
 * FAULT INJECTION FOR TESTS ONLY. Off unless the environment asks for it.
 *
 * The failover tests need stages that are slow (so a kill lands in the
 * middle of a generation) and stages that answer garbage. A daemon reads
 * these switches from its environment once, at start, and the stage server
 * logs a warning when any is on:
 * - BLYD_TEST_STEP_DELAY_MS=N: wait N ms before sending each RESULT
 * - BLYD_TEST_CORRUPT_RESULTS=N: from the N-th step computed on, send
 * RESULT frames of the right shape filled with NaN
 * - BLYD_TEST_CORRUPT_ON_SIGNAL=SIGUSR2 (or SIGUSR1): once the daemon gets
 * that signal, every later RESULT is NaN-filled (lets a test corrupt
 * whichever stage a generation happens to use, at the moment it chooses)
 * Never set them on a node that serves anyone.
 */
import { setTimeout as sleep } from 'node:timers/promises'

export interface StageFaults {
  /** ms to wait before each RESULT */
  stepDelayMs?: number
  /** from this step on (1 = the first), RESULT values are NaN */
  corruptFromStep?: number
  /** on this signal, set corruptFromStep to 1 (every later RESULT is NaN); see armFaultSignal */
  corruptOnSignal?: 'SIGUSR1' | 'SIGUSR2'
}

function positiveInt (raw: string | undefined): number | undefined {
  if (raw == null || raw.trim() === '') {
    return undefined
  }
  const n = Number(raw)
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

/** The switches set in `env`, or undefined when none is. */
export function stageFaultsFromEnv (env: Record<string, string | undefined>): StageFaults | undefined {
  const stepDelayMs = positiveInt(env.BLYD_TEST_STEP_DELAY_MS)
  const corruptFromStep = positiveInt(env.BLYD_TEST_CORRUPT_RESULTS)
  const signal = env.BLYD_TEST_CORRUPT_ON_SIGNAL
  const corruptOnSignal = signal === 'SIGUSR1' || signal === 'SIGUSR2' ? signal : undefined
  if (stepDelayMs == null && corruptFromStep == null && corruptOnSignal == null) {
    return undefined
  }
  return {
    ...(stepDelayMs != null ? { stepDelayMs } : {}),
    ...(corruptFromStep != null ? { corruptFromStep } : {}),
    ...(corruptOnSignal != null ? { corruptOnSignal } : {})
  }
}

/**
 * Listen for `faults.corruptOnSignal` on `proc` and, when it comes, make
 * every later RESULT NaN (the stage server reads `faults` at each step).
 * Returns the function that removes the listener; a no-op when no signal
 * is configured.
 */
export function armFaultSignal (faults: StageFaults | undefined, proc: Pick<NodeJS.Process, 'on' | 'off'>): () => void {
  const signal = faults?.corruptOnSignal
  if (faults == null || signal == null) {
    return () => {}
  }
  const onSignal = (): void => { faults.corruptFromStep = 1 }
  proc.on(signal, onSignal)
  return () => { proc.off(signal, onSignal) }
}

/**
 * FAULT INJECTION FOR TESTS ONLY: what the stage server runs between
 * computing a step and sending its RESULT. Reads `faults` at every step, so
 * armFaultSignal's change takes effect on the next RESULT.
 */
export class StageFaultInjector {
  readonly faults: StageFaults

  constructor (faults: StageFaults) {
    this.faults = faults
  }

  /** Delays and/or NaN-fills the RESULT of the `step`-th step computed (1 = the first). */
  async apply (out: Float32Array, step: number): Promise<Float32Array> {
    const { stepDelayMs, corruptFromStep } = this.faults
    if (stepDelayMs != null) {
      await sleep(stepDelayMs)
    }
    if (corruptFromStep != null && step >= corruptFromStep) {
      return new Float32Array(out.length).fill(NaN)
    }
    return out
  }
}
