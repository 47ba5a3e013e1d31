/**
 * The error class and codes of the stage protocol and the pipeline client.
 * It lives in protocols/ because the /bly/infer codec (infer.ts) throws it,
 * and the client tells a stage's failure from its own by `instanceof
 * PipelineError`; src/pipeline/errors.ts re-exports it.
 */
import { BlydError } from './errors.ts'

/** Stable codes of the errors the stage protocol and the pipeline client raise. */
export const PipelineErrorCode = {
  /** an /bly/infer/1.0.0 frame that does not decode */
  BAD_FRAME: 'ERR_INFER_BAD_FRAME',
  /** the stage is full (sessions or cache room); try another peer */
  BUSY: 'ERR_INFER_BUSY',
  /**
   * a frame would take the bytes partially received frames hold on the
   * stage past its bound (maxPartialFrameBytes); the stream is ended
   */
  PARTIAL_FRAMES_FULL: 'ERR_INFER_PARTIAL_FRAMES_FULL',
  /** the stage answered with an ERROR frame (`remoteCode` says which) */
  REMOTE: 'ERR_INFER_REMOTE',
  /** no answer within the open / step timeout */
  TIMEOUT: 'ERR_INFER_TIMEOUT',
  /** the stream closed or reset before the answer came */
  STREAM_CLOSED: 'ERR_INFER_STREAM_CLOSED',
  /** the route does not cover the model's layers exactly once, in order */
  BAD_ROUTE: 'ERR_PIPELINE_BAD_ROUTE',
  /** the stage server is not started (or stopping) */
  NOT_STARTED: 'ERR_STAGE_NOT_STARTED',
  /** bad argument from a local caller */
  INVALID_ARGUMENT: 'ERR_PIPELINE_INVALID_ARGUMENT',
  /** the pipeline session was closed */
  SESSION_CLOSED: 'ERR_PIPELINE_SESSION_CLOSED',
  /** the operation was aborted through its AbortSignal */
  ABORTED: 'ERR_PIPELINE_ABORTED',
  /** a failed stage could not be replaced (no other holder, every one failed too, or too many recoveries) */
  RECOVERY_FAILED: 'ERR_PIPELINE_RECOVERY_FAILED'
} as const

export type PipelineErrorCodeValue = typeof PipelineErrorCode[keyof typeof PipelineErrorCode]

export interface PipelineErrorOptions extends ErrorOptions {
  /** index of the route hop (stage) the error concerns */
  stage?: number
  /** the wire error code of an ERROR frame (InferErrorCode) */
  remoteCode?: number
}

/** Error raised by the stage protocol, the stage server and the pipeline client. */
export class PipelineError extends BlydError {
  readonly stage?: number
  readonly remoteCode?: number

  constructor (code: PipelineErrorCodeValue, message: string, options: PipelineErrorOptions = {}) {
    super(code, message, options)
    this.name = 'PipelineError'
    this.stage = options.stage
    this.remoteCode = options.remoteCode
  }
}
