import { BlydError } from '../protocols/errors.ts'

/** Stable codes of the errors the learning part raises about datasets. */
export const DatasetErrorCode = {
  /** the source file cannot be opened or is not a regular file */
  File: 'ERR_DATASET_FILE',
  /** the file is empty, or an ids file has no non-empty line */
  Empty: 'ERR_DATASET_EMPTY',
  /** the file or the payload made from it is over MAX_DATASET_BYTES */
  TooLarge: 'ERR_DATASET_TOO_LARGE',
  /** the text (or a JSONL line) is not valid UTF-8 */
  Utf8: 'ERR_DATASET_UTF8',
  /** a JSONL line that is not JSON, or not an object with an "ids" array */
  Json: 'ERR_DATASET_JSON',
  /** a token id that is not an integer in [0, vocab) of the model */
  Id: 'ERR_DATASET_ID',
  /** a JSONL line with fewer than 2 ids */
  ShortSequence: 'ERR_DATASET_SHORT_SEQUENCE',
  /** a name that breaks the name rule */
  Name: 'ERR_DATASET_NAME',
  /** a dataset with that name is already on chain A */
  NameTaken: 'ERR_DATASET_NAME_TAKEN',
  /** format, evalPermille or splitTokens out of range */
  Option: 'ERR_DATASET_OPTION',
  /** no model to check ids against, or a text dataset used with a model that has no tokenizer */
  Model: 'ERR_DATASET_MODEL',
  /** no dataset with that name or id prefix */
  NotFound: 'ERR_DATASET_NOT_FOUND',
  /** a name or id prefix that matches more than one dataset */
  Ambiguous: 'ERR_DATASET_AMBIGUOUS',
  /** the dataset's payload is not (yet) stored locally */
  PayloadMissing: 'ERR_DATASET_PAYLOAD_MISSING',
  /** a stored dataset whose payload does not decode or does not match its header */
  Corrupt: 'ERR_DATASET_CORRUPT'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type DatasetErrorCode = typeof DatasetErrorCode[keyof typeof DatasetErrorCode]

/** A dataset problem; `line` (1-based) names the source line when one is at fault. */
export class DatasetError extends BlydError {
  readonly line?: number

  constructor (code: DatasetErrorCode, message: string, options?: ErrorOptions & { line?: number }) {
    super(code, message, options)
    this.name = 'DatasetError'
    this.line = options?.line
  }
}
