import { BlydError } from '../protocols/errors.ts'

/** Stable codes of the errors the learning part raises about datasets. */
export const DatasetErrorCode = {
  /** the source file cannot be opened or is not a regular file */
  FILE: 'ERR_DATASET_FILE',
  /** the file is empty, or an ids file has no non-empty line */
  EMPTY: 'ERR_DATASET_EMPTY',
  /** the file or the payload made from it is over MAX_DATASET_BYTES */
  TOO_LARGE: 'ERR_DATASET_TOO_LARGE',
  /** the text (or a JSONL line) is not valid UTF-8 */
  UTF8: 'ERR_DATASET_UTF8',
  /** a JSONL line that is not JSON, or not an object with an "ids" array */
  JSON: 'ERR_DATASET_JSON',
  /** a token id that is not an integer in [0, vocab) of the model */
  ID: 'ERR_DATASET_ID',
  /** a JSONL line with fewer than 2 ids */
  SHORT_SEQUENCE: 'ERR_DATASET_SHORT_SEQUENCE',
  /** a name that breaks the name rule */
  NAME: 'ERR_DATASET_NAME',
  /** a dataset with that name is already on chain A */
  NAME_TAKEN: 'ERR_DATASET_NAME_TAKEN',
  /** format, evalPermille or splitTokens out of range */
  OPTION: 'ERR_DATASET_OPTION',
  /** no model to check ids against, or a text dataset used with a model that has no tokenizer */
  MODEL: 'ERR_DATASET_MODEL',
  /** no dataset with that name or id prefix */
  NOT_FOUND: 'ERR_DATASET_NOT_FOUND',
  /** a name or id prefix that matches more than one dataset */
  AMBIGUOUS: 'ERR_DATASET_AMBIGUOUS',
  /** the dataset's payload is not (yet) stored locally */
  PAYLOAD_MISSING: 'ERR_DATASET_PAYLOAD_MISSING',
  /** a stored dataset whose payload does not decode or does not match its header */
  CORRUPT: 'ERR_DATASET_CORRUPT'
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
