import { BlydError } from '../protocols/errors.ts'

/** Stable codes of the errors raised by the model part. */
export const ModelErrorCode = {
  /** file shorter than the 8-byte length prefix, or header length runs past the end of the file */
  HEADER_PAST_EOF: 'ERR_SAFETENSORS_HEADER_PAST_EOF',
  /** the header is not a JSON object of tensor entries */
  BAD_HEADER_JSON: 'ERR_SAFETENSORS_BAD_HEADER_JSON',
  /** a dtype safetensors names that blyd does not read */
  UNKNOWN_DTYPE: 'ERR_SAFETENSORS_UNKNOWN_DTYPE',
  /** shape x dtype size differs from the entry's byte length */
  SIZE_MISMATCH: 'ERR_SAFETENSORS_SIZE_MISMATCH',
  /** data offsets end past the end of the file */
  OFFSETS_PAST_EOF: 'ERR_SAFETENSORS_OFFSETS_PAST_EOF',
  /** data ranges overlap, leave holes, or are not sorted */
  BAD_OFFSETS: 'ERR_SAFETENSORS_BAD_OFFSETS',
  /** model.safetensors.index.json is malformed or names a shard that is missing */
  BAD_SHARD_INDEX: 'ERR_SAFETENSORS_BAD_SHARD_INDEX',
  /** a tensor the config requires is absent, or has the wrong shape */
  MISSING_TENSOR: 'ERR_MISSING_TENSOR',
  WRONG_SHAPE: 'ERR_TENSOR_WRONG_SHAPE',
  /** config.json names another architecture than qwen3 */
  UNSUPPORTED_ARCHITECTURE: 'ERR_UNSUPPORTED_ARCHITECTURE',
  /** config.json lacks a dimension or has an invalid one */
  BAD_CONFIG: 'ERR_BAD_MODEL_CONFIG',
  /** a requested tfjs backend could not be started */
  BACKEND_UNAVAILABLE: 'ERR_BACKEND_UNAVAILABLE',
  /** forward() called with inputs that do not fit the shard or the session */
  BAD_INPUT: 'ERR_MODEL_BAD_INPUT',
  /** a session was used after dispose() */
  SESSION_CLOSED: 'ERR_SESSION_CLOSED',
  /** sampling / generation options out of range */
  BAD_OPTIONS: 'ERR_BAD_GENERATION_OPTIONS',
  /** tokenizer.json / tokenizer_config.json unreadable, or template failed */
  BAD_TOKENIZER: 'ERR_BAD_TOKENIZER',
  /** a shard worker thread failed, exited or was stopped */
  WORKER_FAILED: 'ERR_MODEL_WORKER_FAILED',
  /** a text command on a model imported without a tokenizer */
  NO_TOKENIZER: 'ERR_MODEL_NO_TOKENIZER',
  /** no model manifest with that id (or id prefix) on chain A */
  MODEL_NOT_FOUND: 'ERR_MODEL_NOT_FOUND',
  /** a model id prefix that matches more than one manifest */
  AMBIGUOUS_MODEL: 'ERR_MODEL_AMBIGUOUS',
  /** a manifest block whose payload is not a valid blyd model manifest */
  BAD_MANIFEST: 'ERR_BAD_MODEL_MANIFEST',
  /** a unit's layer block is not on chain B, or its payload is not stored locally */
  BLOCK_MISSING: 'ERR_MODEL_BLOCK_MISSING',
  /** a model some of whose units (layer blocks or their payloads) are not stored locally, e.g. after a crash mid-import; names the units */
  MODEL_INCOMPLETE: 'ERR_MODEL_INCOMPLETE',
  /** a layer block whose payload fails verification (chunk hash, manifest hash, safetensors) */
  BLOCK_CORRUPT: 'ERR_MODEL_BLOCK_CORRUPT',
  /** a checkpoint folder that cannot be imported (missing files, extra tensors) */
  BAD_CHECKPOINT: 'ERR_BAD_CHECKPOINT',
  /** the checkpoint changed on disk while it was being imported */
  CHECKPOINT_CHANGED: 'ERR_CHECKPOINT_CHANGED',
  /** no version of the model's history has that id (or id prefix), or this process reads no versions */
  VERSION_NOT_FOUND: 'ERR_MODEL_VERSION_NOT_FOUND',
  /** a version id prefix that matches more than one version of the model */
  VERSION_AMBIGUOUS: 'ERR_MODEL_VERSION_AMBIGUOUS'
} as const

export type ModelErrorCodeValue = typeof ModelErrorCode[keyof typeof ModelErrorCode]

/** Error raised by the model part; `file` / `tensor` name the culprit where there is one. */
export class ModelError extends BlydError {
  readonly file?: string
  readonly tensor?: string

  constructor (code: ModelErrorCodeValue, message: string, where: { file?: string, tensor?: string } = {}, options?: ErrorOptions) {
    const loc = [where.file != null ? `file ${where.file}` : '', where.tensor != null ? `tensor ${where.tensor}` : ''].filter(s => s !== '').join(', ')
    super(code, loc === '' ? message : `${message} (${loc})`, options)
    this.name = 'ModelError'
    this.file = where.file
    this.tensor = where.tensor
  }
}
