import { BlydError } from '../protocols/errors.ts'

/** Stable codes of the errors raised while computing, encoding or applying weight deltas. */
export const WeightDeltaErrorCode = {
  /** the live weights hold a tensor the checkpoint (or the delta's target) lacks */
  MISSING_TENSOR: 'ERR_DELTA_MISSING_TENSOR',
  /** the checkpoint (or the delta) names a tensor the live weights do not hold */
  EXTRA_TENSOR: 'ERR_DELTA_EXTRA_TENSOR',
  /** a tensor whose shape differs from the live one */
  SHAPE_MISMATCH: 'ERR_DELTA_SHAPE_MISMATCH',
  /** a checkpoint tensor whose dtype is not a float blyd reads (F32, F16, BF16) */
  NOT_FLOAT: 'ERR_DELTA_NOT_FLOAT',
  /** a NaN or infinity in a checkpoint tensor or in a difference */
  NON_FINITE_INPUT: 'ERR_DELTA_NON_FINITE_INPUT',
  /** applying the delta gives a weight that is not finite (f32 overflow) */
  NON_FINITE_RESULT: 'ERR_DELTA_NON_FINITE_RESULT',
  /** encoder options out of range (density, rank, ...) */
  BAD_OPTIONS: 'ERR_DELTA_BAD_OPTIONS'
} as const

export type WeightDeltaErrorCodeValue = typeof WeightDeltaErrorCode[keyof typeof WeightDeltaErrorCode]

/** Error of the weight-delta math (src/learning); `tensor` names the culprit where there is one. */
export class WeightDeltaError extends BlydError {
  readonly tensor?: string

  constructor (code: WeightDeltaErrorCodeValue, message: string, where: { tensor?: string } = {}, options?: ErrorOptions) {
    super(code, where.tensor != null ? `${message} (tensor ${where.tensor})` : message, options)
    this.name = 'WeightDeltaError'
    this.tensor = where.tensor
  }
}
