/**
 * The error class and codes of the training protocol /bly/train/1.0.0, its
 * stage service and the pipeline-training driver. It lives in protocols/
 * because the codec (train.ts) throws it; mesh/ re-exports it.
 */
import { BlydError } from './errors.ts'

export const TrainProtocolErrorCode = {
  /** a /bly/train/1.0.0 frame that does not decode */
  BAD_FRAME: 'ERR_PTRAIN_BAD_FRAME',
  /** the stage answered with an ERROR frame (`remoteCode` says which: TrainWireError) */
  REMOTE: 'ERR_PTRAIN_REMOTE',
  /** a stage's answer holds a non-finite value (activations, gradient, loss, sum of squares) */
  NON_FINITE: 'ERR_PTRAIN_NON_FINITE',
  /** an answer that does not fit the request (wrong type, job, step, micro-batch or shape) */
  BAD_REPLY: 'ERR_PTRAIN_BAD_REPLY',
  /** the stream closed or reset before the answer came */
  STREAM_CLOSED: 'ERR_PTRAIN_STREAM_CLOSED',
  /** no answer within the request timeout */
  TIMEOUT: 'ERR_PTRAIN_TIMEOUT',
  /** a bad argument from a local caller (route, options) */
  INVALID_ARGUMENT: 'ERR_PTRAIN_INVALID_ARGUMENT',
  /** a stage refuses a request (remoteCode: the TrainWireError it answers with) */
  REFUSED: 'ERR_PTRAIN_REFUSED',
  /** the service is not started */
  NOT_STARTED: 'ERR_PTRAIN_NOT_STARTED',
  /** an audit found a stage's answer wrong (another holder recomputed it differently): the stage is replaced */
  GARBAGE: 'ERR_PTRAIN_GARBAGE',
  /** an audit could not say which of two holders is right (they disagree, no anomaly, no third holder) */
  AUDIT_UNDECIDED: 'ERR_PTRAIN_AUDIT_UNDECIDED',
  /** a stage failed and no other live holder of its layers is left (`cause`: the last failure) */
  NO_HOLDER: 'ERR_PTRAIN_NO_HOLDER',
  /** a job failed more often than its bound of recoveries (`cause`: the last failure) */
  TOO_MANY_FAULTS: 'ERR_PTRAIN_TOO_MANY_FAULTS'
} as const

export type TrainProtocolErrorCodeValue = typeof TrainProtocolErrorCode[keyof typeof TrainProtocolErrorCode]

export interface TrainProtocolErrorOptions extends ErrorOptions {
  /** index of the stage (route hop) the error concerns */
  stage?: number
  /** the wire code of an ERROR frame */
  remoteCode?: number
}

export class TrainProtocolError extends BlydError {
  readonly stage?: number
  readonly remoteCode?: number

  constructor (code: TrainProtocolErrorCodeValue, message: string, options: TrainProtocolErrorOptions = {}) {
    super(code, message, options)
    this.name = 'TrainProtocolError'
    this.stage = options.stage
    this.remoteCode = options.remoteCode
  }
}
