/**
 * Which failures of a stage are worth routing around, and the checks a
 * RESULT must pass (shape, position, finite values) before a session uses it.
 */
import { InferErrorCode } from '../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { firstNonFinite } from './finite.ts'

/** Why a stage was given up on. */
export const FailureReason = {
  /** the stream closed or reset (the peer died, restarted, dropped the session) */
  CLOSED: 'closed',
  /** no answer within the step deadline (a stalled or overloaded peer) */
  TIMEOUT: 'timeout',
  /** a RESULT that does not decode, has the wrong shape / position, or non-finite values */
  MALFORMED: 'malformed',
  /** the stage answered ERROR */
  ERROR: 'error',
  /** the stage serves another weights version than the session's (ERROR WRONG_VERSION at OPEN) */
  VERSION: 'version',
  /** the stage answered BUSY */
  BUSY: 'busy',
  /** replayed outputs disagree with what the lost stage produced */
  INCONSISTENT: 'inconsistent'
} as const

export type FailureReasonValue = typeof FailureReason[keyof typeof FailureReason]

/**
 * The reason to route around a stage that threw `err`, or undefined when the
 * error is not the stage's fault (the caller aborted, the session was closed,
 * a bad local argument) and must reach the caller unchanged.
 */
export function failureReason (err: unknown, signal?: AbortSignal): FailureReasonValue | undefined {
  if (signal?.aborted === true) {
    return undefined
  }
  if (!(err instanceof PipelineError)) {
    return FailureReason.ERROR
  }
  switch (err.code) {
    case PipelineErrorCode.TIMEOUT:
      return FailureReason.TIMEOUT
    case PipelineErrorCode.STREAM_CLOSED:
      return FailureReason.CLOSED
    case PipelineErrorCode.BAD_FRAME:
      return FailureReason.MALFORMED
    case PipelineErrorCode.BUSY:
      return FailureReason.BUSY
    case PipelineErrorCode.REMOTE:
      return err.remoteCode === InferErrorCode.WRONG_VERSION ? FailureReason.VERSION : FailureReason.ERROR
    default:
      return undefined
  }
}

/** Throws ERR_INFER_BAD_FRAME unless `r` is [rows, cols] at startPos with finite values only. */
export function checkStageResult (r: { rows: number, cols: number, startPos: number, data: Float32Array }, rows: number, cols: number, startPos: number, stage: number): void {
  if (r.rows !== rows || r.cols !== cols || r.startPos !== startPos || r.data.length !== rows * cols) {
    throw new PipelineError(PipelineErrorCode.BAD_FRAME, `stage ${stage} answered [${r.rows}, ${r.cols}] at ${r.startPos} (${r.data.length} values), expected [${rows}, ${cols}] at ${startPos}`, { stage })
  }
  const i = firstNonFinite(r.data)
  if (i >= 0) {
    throw new PipelineError(PipelineErrorCode.BAD_FRAME, `stage ${stage} answered a non-finite value (${r.data[i]}) at row ${Math.floor(i / cols) + startPos}`, { stage })
  }
}
