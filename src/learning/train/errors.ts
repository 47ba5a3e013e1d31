/** Errors of the trainer (typed, with a code). */
export const TrainErrorCode = {
  /** a bad option (rank, steps, learning rate, layer range...) */
  OPTION: 'ERR_TRAIN_OPTION',
  /** the base weights lack a tensor */
  WEIGHTS: 'ERR_TRAIN_WEIGHTS',
  /** bad training data (a token id outside the vocabulary, too few windows) */
  DATA: 'ERR_TRAIN_DATA',
  /** the loss or a gradient went non-finite */
  NON_FINITE: 'ERR_TRAIN_NON_FINITE',
  /** the job was aborted */
  ABORTED: 'ERR_TRAIN_ABORTED',
  /** the training thread failed outside the job (it could not start, or exited) */
  THREAD: 'ERR_TRAIN_THREAD'
} as const

export type TrainErrorCodeValue = typeof TrainErrorCode[keyof typeof TrainErrorCode]

export class TrainError extends Error {
  readonly code: TrainErrorCodeValue

  constructor (code: TrainErrorCodeValue, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TrainError'
    this.code = code
  }
}
