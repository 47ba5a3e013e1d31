/**
 * Datasets on chain A (normative text: protocols/dataset.md): the Dataset
 * block's header fields, the canonical payload of an `ids` dataset, and the
 * train/eval split of a dataset's token stream.
 *
 * Canonical ids payload, all integers u32 little-endian: count, then per
 * sequence: length, then `length` token ids.
 * count >= 1, every length >= 2, no bytes after the last sequence; since every
 * value has a fixed width, a list of sequences has exactly one encoding.
 *
 * Split: each sequence is cut on its own into windows of `splitTokens`
 * tokens (the last partial window of a sequence is kept when it has >= 2
 * tokens); windows are numbered w = 0, 1, ... in stream order, and window w
 * is an eval window iff `u16be(sha256("bly/split/v1" || datasetId ||
 * u32be(w))[0..2]) mod 1000 < evalPermille`.
 * A text dataset's token stream is one sequence (the whole text tokenized).
 *
 * Imports nothing but node built-ins and other protocol modules.
 */
import { createHash } from 'node:crypto'
import { BlydError } from './errors.ts'

/** The header fields of a Dataset block; a Dataset header carries exactly these (model: ids only). */
export const DatasetField = {
  NAME: 'name',
  FORMAT: 'format',
  SEQUENCES: 'sequences',
  TOKENS: 'tokens',
  BYTES: 'bytes',
  EVAL_PERMILLE: 'evalPermille',
  SPLIT_TOKENS: 'splitTokens',
  MODEL: 'model'
} as const

export const DatasetFormat = {
  /** UTF-8 text: the payload is the file's bytes, tokenized with a model's tokenizer when used */
  TEXT: 'text',
  /** token ids: the canonical ids payload, checked against `model`'s vocabulary */
  IDS: 'ids'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type DatasetFormat = typeof DatasetFormat[keyof typeof DatasetFormat]

export function isDatasetFormat (value: unknown): value is DatasetFormat {
  return value === DatasetFormat.TEXT || value === DatasetFormat.IDS
}

/** Largest dataset payload (256 MiB): a consensus limit, checked on every Dataset header. */
export const MAX_DATASET_BYTES = 256 * 1024 * 1024

/** A dataset name: 1 to 64 characters, ASCII letters, digits, '.', '_' and '-', starting with a letter or digit. */
export const DATASET_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** evalPermille is 0..1000 (0: no eval windows, 1000: every window is eval). */
export const MAX_EVAL_PERMILLE = 1000

/** Window size bounds: a window needs two tokens for one next-token prediction. */
export const MIN_SPLIT_TOKENS = 2
export const MAX_SPLIT_TOKENS = 65536

/** Domain of the split hash. */
export const SPLIT_DOMAIN = 'bly/split/v1'

/** Token ids are u32 in the payload. */
const MAX_TOKEN_ID = 0xffffffff

export const DatasetCodecErrorCode = {
  /** the payload ends inside a count, a length or an id */
  TRUNCATED: 'ERR_DATASET_PAYLOAD_TRUNCATED',
  /** bytes follow the last sequence */
  TRAILING: 'ERR_DATASET_PAYLOAD_TRAILING',
  /** zero sequences */
  EMPTY: 'ERR_DATASET_PAYLOAD_EMPTY',
  /** a sequence of fewer than 2 ids */
  SHORT_SEQUENCE: 'ERR_DATASET_PAYLOAD_SHORT_SEQUENCE',
  /** a token id outside [0, vocab) (or not a u32 integer when encoding) */
  ID_RANGE: 'ERR_DATASET_PAYLOAD_ID_RANGE',
  /** the payload would exceed MAX_DATASET_BYTES */
  TOO_LARGE: 'ERR_DATASET_PAYLOAD_TOO_LARGE',
  /** split parameters or the stream description out of range */
  SPLIT: 'ERR_DATASET_SPLIT'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type DatasetCodecErrorCode = typeof DatasetCodecErrorCode[keyof typeof DatasetCodecErrorCode]

/** A payload or split input that breaks a rule of protocols/dataset.md. */
export class DatasetCodecError extends BlydError {
  constructor (code: DatasetCodecErrorCode, message: string) {
    super(code, message)
    this.name = 'DatasetCodecError'
  }
}

/**
 * A dataset's token stream: `tokens` holds every sequence back to back;
 * sequence i is `tokens[offsets[i] .. offsets[i + 1])`.
 */
export interface TokenStream {
  tokens: Uint32Array
  /** sequence starts, plus the end: length = sequences + 1, offsets[0] = 0 */
  offsets: Uint32Array
}

/** Bytes of the canonical ids payload of `sequences` sequences holding `tokens` ids in all. */
export function idsPayloadSize (sequences: number, tokens: number): number {
  return 4 + 4 * sequences + 4 * tokens
}

/** The token stream of one sequence (a text dataset's tokenized text). */
export function singleSequenceStream (tokens: Uint32Array): TokenStream {
  return { tokens, offsets: Uint32Array.of(0, tokens.length) }
}

/**
 * The canonical payload of a token stream. Throws DatasetCodecError when the
 * stream breaks a payload rule (no sequence, a sequence under 2 ids, an id
 * >= `vocab` when given, over MAX_DATASET_BYTES).
 */
export function encodeIdsPayload (stream: TokenStream, options: { vocab?: number } = {}): Uint8Array {
  const count = stream.offsets.length - 1
  if (count < 1) {
    throw new DatasetCodecError(DatasetCodecErrorCode.EMPTY, 'an ids dataset needs at least one sequence')
  }
  const size = idsPayloadSize(count, stream.tokens.length)
  if (size > MAX_DATASET_BYTES) {
    throw new DatasetCodecError(DatasetCodecErrorCode.TOO_LARGE, `the ids payload would be ${size} bytes, over the limit of ${MAX_DATASET_BYTES}`)
  }
  const limit = options.vocab ?? MAX_TOKEN_ID + 1
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  view.setUint32(0, count, true)
  let at = 4
  for (let s = 0; s < count; s++) {
    const start = stream.offsets[s]
    const end = stream.offsets[s + 1]
    if (end - start < 2) {
      throw new DatasetCodecError(DatasetCodecErrorCode.SHORT_SEQUENCE, `sequence ${s} has ${Math.max(0, end - start)} ids; at least 2 are needed`)
    }
    view.setUint32(at, end - start, true)
    at += 4
    for (let i = start; i < end; i++) {
      const id = stream.tokens[i]
      if (id >= limit) {
        throw new DatasetCodecError(DatasetCodecErrorCode.ID_RANGE, `sequence ${s}: id ${id} is outside [0, ${limit})`)
      }
      view.setUint32(at, id, true)
      at += 4
    }
  }
  return out
}

/**
 * Decodes a canonical ids payload. Checks every rule: at least one sequence,
 * every sequence at least 2 ids, every id below `vocab` (when given), no
 * truncation, no trailing bytes, at most MAX_DATASET_BYTES.
 */
export function decodeIdsPayload (bytes: Uint8Array, options: { vocab?: number } = {}): TokenStream {
  if (bytes.length > MAX_DATASET_BYTES) {
    throw new DatasetCodecError(DatasetCodecErrorCode.TOO_LARGE, `ids payload of ${bytes.length} bytes exceeds the limit of ${MAX_DATASET_BYTES}`)
  }
  if (bytes.length < 4) {
    throw new DatasetCodecError(DatasetCodecErrorCode.TRUNCATED, `ids payload of ${bytes.length} bytes has no sequence count`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const count = view.getUint32(0, true)
  if (count === 0) {
    throw new DatasetCodecError(DatasetCodecErrorCode.EMPTY, 'ids payload holds no sequence')
  }
  // each sequence takes at least 12 bytes: bounds the offsets array before allocating it
  if (count > (bytes.length - 4) / 12) {
    throw new DatasetCodecError(DatasetCodecErrorCode.TRUNCATED, `ids payload of ${bytes.length} bytes cannot hold ${count} sequences`)
  }
  const totalIds = (bytes.length - 4 - 4 * count) / 4
  const tokens = new Uint32Array(Math.max(0, Math.floor(totalIds)))
  const offsets = new Uint32Array(count + 1)
  const limit = options.vocab ?? MAX_TOKEN_ID + 1
  let at = 4
  let n = 0
  for (let s = 0; s < count; s++) {
    if (at + 4 > bytes.length) {
      throw new DatasetCodecError(DatasetCodecErrorCode.TRUNCATED, `ids payload ends before the length of sequence ${s}`)
    }
    const length = view.getUint32(at, true)
    at += 4
    if (length < 2) {
      throw new DatasetCodecError(DatasetCodecErrorCode.SHORT_SEQUENCE, `sequence ${s} has ${length} ids; at least 2 are needed`)
    }
    // the ids of this sequence, and the length fields of those after it, must fit
    if (length > (bytes.length - at - 4 * (count - s - 1)) / 4) {
      throw new DatasetCodecError(DatasetCodecErrorCode.TRUNCATED, `ids payload ends inside sequence ${s} (${length} ids declared)`)
    }
    for (let i = 0; i < length; i++) {
      const id = view.getUint32(at, true)
      at += 4
      if (id >= limit) {
        throw new DatasetCodecError(DatasetCodecErrorCode.ID_RANGE, `sequence ${s}: id ${id} at position ${i} is outside [0, ${limit})`)
      }
      tokens[n++] = id
    }
    offsets[s + 1] = n
  }
  if (at !== bytes.length) {
    throw new DatasetCodecError(DatasetCodecErrorCode.TRAILING, `${bytes.length - at} bytes follow the last sequence of the ids payload`)
  }
  return { tokens, offsets }
}

/** What the split needs: the dataset id, its sequences' lengths, and the header's split fields. */
export interface SplitInput {
  /** the Dataset block id (32 bytes) */
  datasetId: Uint8Array
  /** token count of each sequence of the stream, in order */
  sequenceLengths: ArrayLike<number>
  splitTokens: number
  evalPermille: number
}

/**
 * The windows of a token stream. Window w covers stream positions
 * `starts[w] .. starts[w] + lengths[w]`; `evalWindows` and `trainWindows`
 * partition 0..count-1, each ascending.
 */
export interface DatasetSplit {
  splitTokens: number
  evalPermille: number
  count: number
  starts: Uint32Array
  lengths: Uint32Array
  evalWindows: Uint32Array
  trainWindows: Uint32Array
}

function checkSplitParams (splitTokens: number, evalPermille: number): void {
  if (!Number.isSafeInteger(splitTokens) || splitTokens < MIN_SPLIT_TOKENS || splitTokens > MAX_SPLIT_TOKENS) {
    throw new DatasetCodecError(DatasetCodecErrorCode.SPLIT, `splitTokens must be an integer from ${MIN_SPLIT_TOKENS} to ${MAX_SPLIT_TOKENS} (got ${splitTokens})`)
  }
  if (!Number.isSafeInteger(evalPermille) || evalPermille < 0 || evalPermille > MAX_EVAL_PERMILLE) {
    throw new DatasetCodecError(DatasetCodecErrorCode.SPLIT, `evalPermille must be an integer from 0 to ${MAX_EVAL_PERMILLE} (got ${evalPermille})`)
  }
}

/** The split hash of window `w`: u16be of the first two bytes of sha256(domain || datasetId || u32be(w)), mod 1000. */
export function splitBucket (datasetId: Uint8Array, w: number): number {
  const index = Buffer.alloc(4)
  index.writeUInt32BE(w)
  const digest = createHash('sha256').update(SPLIT_DOMAIN).update(datasetId).update(index).digest()
  return ((digest[0] << 8) | digest[1]) % 1000
}

/** True iff window `w` of dataset `datasetId` is an eval window at `evalPermille`. */
export function isEvalWindow (datasetId: Uint8Array, w: number, evalPermille: number): boolean {
  return splitBucket(datasetId, w) < evalPermille
}

/** Windows a sequence of `length` tokens is cut into. */
export function windowsOfSequence (length: number, splitTokens: number): number {
  const full = Math.floor(length / splitTokens)
  return full + (length - full * splitTokens >= 2 ? 1 : 0)
}

/**
 * The split of a token stream (a pure function of its input; see the file
 * comment). Throws DatasetCodecError on parameters out of range, a
 * sequence length that is not a non-negative integer, or a stream of more
 * than 2^32 - 1 tokens.
 */
export function splitWindows (input: SplitInput): DatasetSplit {
  const { datasetId, sequenceLengths, splitTokens, evalPermille } = input
  checkSplitParams(splitTokens, evalPermille)
  if (datasetId.length !== 32) {
    throw new DatasetCodecError(DatasetCodecErrorCode.SPLIT, `datasetId must be 32 bytes (got ${datasetId.length})`)
  }
  let count = 0
  let total = 0
  for (let s = 0; s < sequenceLengths.length; s++) {
    const length = sequenceLengths[s]
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new DatasetCodecError(DatasetCodecErrorCode.SPLIT, `sequence ${s} has an invalid length ${length}`)
    }
    total += length
    count += windowsOfSequence(length, splitTokens)
  }
  if (total > MAX_TOKEN_ID) {
    throw new DatasetCodecError(DatasetCodecErrorCode.SPLIT, `a token stream of ${total} tokens is longer than 2^32 - 1`)
  }
  const starts = new Uint32Array(count)
  const lengths = new Uint32Array(count)
  const isEval = new Uint8Array(count)
  let evalCount = 0
  let w = 0
  let offset = 0
  for (let s = 0; s < sequenceLengths.length; s++) {
    const length = sequenceLengths[s]
    for (let at = 0; at < length; at += splitTokens) {
      const n = Math.min(splitTokens, length - at)
      if (n < 2) {
        break
      }
      starts[w] = offset + at
      lengths[w] = n
      if (isEvalWindow(datasetId, w, evalPermille)) {
        isEval[w] = 1
        evalCount++
      }
      w++
    }
    offset += length
  }
  const evalWindows = new Uint32Array(evalCount)
  const trainWindows = new Uint32Array(count - evalCount)
  let e = 0
  let t = 0
  for (let i = 0; i < count; i++) {
    if (isEval[i] === 1) {
      evalWindows[e++] = i
    } else {
      trainWindows[t++] = i
    }
  }
  return { splitTokens, evalPermille, count, starts, lengths, evalWindows, trainWindows }
}

/** The sequence lengths of a token stream (what splitWindows takes). */
export function sequenceLengths (stream: TokenStream): Uint32Array {
  const out = new Uint32Array(stream.offsets.length - 1)
  for (let s = 0; s < out.length; s++) {
    out[s] = stream.offsets[s + 1] - stream.offsets[s]
  }
  return out
}
