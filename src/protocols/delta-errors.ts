import { BlydError } from './errors.ts'

/**
 * Stable codes of a delta payload that is not canonical (protocols/delta.md).
 * One code per failure kind, so validators can report why they refused it.
 */
export const DeltaFormatErrorCode = {
  /** the payload is not exactly one zstd frame (no dictionary, nothing after it), or zstd fails to decompress it */
  ZSTD: 'ERR_DELTA_ZSTD',
  /** the body (declared or decompressed) exceeds the size bound */
  TOO_LARGE: 'ERR_DELTA_TOO_LARGE',
  /** the body does not start with "BLYD" */
  BAD_MAGIC: 'ERR_DELTA_BAD_MAGIC',
  /** a format version this code does not read */
  BAD_VERSION: 'ERR_DELTA_BAD_VERSION',
  /** a codec byte outside 1..4 */
  UNKNOWN_CODEC: 'ERR_DELTA_UNKNOWN_CODEC',
  /** the body's codec differs from the one the block header names */
  CODEC_MISMATCH: 'ERR_DELTA_CODEC_MISMATCH',
  /** the body ends inside a field */
  TRUNCATED: 'ERR_DELTA_TRUNCATED',
  /** bytes after the last tensor */
  TRAILING_BYTES: 'ERR_DELTA_TRAILING_BYTES',
  /** tensor count 0 or above the bound */
  BAD_COUNT: 'ERR_DELTA_BAD_COUNT',
  /** a tensor name that is empty or not valid UTF-8 */
  BAD_NAME: 'ERR_DELTA_BAD_NAME',
  /** tensor names not strictly ascending (unsorted or duplicate) */
  NAME_ORDER: 'ERR_DELTA_NAME_ORDER',
  /** ndim not 1 or 2, a zero dimension, or an element count above the bound */
  BAD_DIMS: 'ERR_DELTA_BAD_DIMS',
  /** a tensor's codec body does not fit its dims (array lengths) */
  BAD_LENGTH: 'ERR_DELTA_BAD_LENGTH',
  /** a varint that is over-long, not minimal, or above 2^32 - 1 */
  BAD_VARINT: 'ERR_DELTA_BAD_VARINT',
  /** sparse: k > n */
  K_RANGE: 'ERR_DELTA_K_RANGE',
  /** sparse: an index that is not strictly above the previous one, or not below n */
  INDEX_ORDER: 'ERR_DELTA_INDEX_ORDER',
  /** lowrank: rank 0 or above min(rows, cols) */
  RANK_RANGE: 'ERR_DELTA_RANK_RANGE',
  /** a NaN or infinite float anywhere */
  NON_FINITE: 'ERR_DELTA_NON_FINITE',
  /** int8 / sparse quantization not in canonical form (q = -128, a negative scale, scale and q inconsistent, a sparse q of 0) */
  BAD_QUANT: 'ERR_DELTA_BAD_QUANT',
  /** a tensor kind the codec does not allow, or an unknown codec name given to the encoder */
  BAD_KIND: 'ERR_DELTA_BAD_KIND',
  /** the body re-encodes to other bytes (a check this codec missed; never expected) */
  NOT_CANONICAL: 'ERR_DELTA_NOT_CANONICAL'
} as const

export type DeltaFormatErrorCodeValue = typeof DeltaFormatErrorCode[keyof typeof DeltaFormatErrorCode]

/** A delta payload or body that is not canonical, or a delta that cannot be encoded canonically. */
export class DeltaFormatError extends BlydError {
  /** the tensor concerned, where there is one */
  readonly tensor?: string

  constructor (code: DeltaFormatErrorCodeValue, message: string, where: { tensor?: string } = {}, options?: ErrorOptions) {
    super(code, where.tensor != null ? `${message} (tensor ${where.tensor})` : message, options)
    this.name = 'DeltaFormatError'
    this.tensor = where.tensor
  }
}
