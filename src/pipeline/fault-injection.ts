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
 * Never set them on a node that serves anyone.
 */

export interface StageFaults {
  /** ms to wait before each RESULT */
  stepDelayMs?: number
  /** from this step on (1 = the first), RESULT values are NaN */
  corruptFromStep?: number
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
  if (stepDelayMs == null && corruptFromStep == null) {
    return undefined
  }
  return { ...(stepDelayMs != null ? { stepDelayMs } : {}), ...(corruptFromStep != null ? { corruptFromStep } : {}) }
}
