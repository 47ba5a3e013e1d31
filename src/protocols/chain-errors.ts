/**
 * The chain's error class and the code of every chain rule. It lives in
 * protocols/ because the header codec (block-header.ts) throws it and the
 * codes are shared vocabulary: the store counts rejections per code, the
 * network scores peers per code. src/chain/errors.ts re-exports it.
 */
import { BlydError } from './errors.ts'

/**
 * Stable codes of every rule the chain enforces. Each validation rule has its
 * own code so peers' misbehaviour can be counted and scored per rule.
 */
export const ChainErrorCode = {
  /** malformed or non-canonical header / envelope encoding */
  BLOCK_ENCODING: 'ERR_BLOCK_ENCODING',
  /** the id given with a block does not match sha-256 of its header */
  BLOCK_ID: 'ERR_BLOCK_ID',
  /** the Ed25519 signature does not verify against the author key */
  BLOCK_SIGNATURE: 'ERR_BLOCK_SIGNATURE',
  /** a parent is not in the store (the block waits in the orphan pool) */
  UNKNOWN_PARENT: 'ERR_UNKNOWN_PARENT',
  /** type/chain mismatch or a per-type rule broken */
  BLOCK_TYPE: 'ERR_BLOCK_TYPE',
  /** the encoded header is larger than the limit */
  HEADER_TOO_LARGE: 'ERR_HEADER_TOO_LARGE',
  /** more parents than the limit */
  TOO_MANY_PARENTS: 'ERR_TOO_MANY_PARENTS',
  /** payload or chunk size above the limits */
  PAYLOAD_TOO_LARGE: 'ERR_PAYLOAD_TOO_LARGE',
  /** chunk count / chunk size / bytes given inconsistent with payload_size */
  PAYLOAD_SIZE: 'ERR_PAYLOAD_SIZE',
  /** a payload chunk whose bytes do not hash to the header's chunk hash */
  CHUNK_HASH: 'ERR_CHUNK_HASH',
  /**
   * a block names a chunk hash at a length that chunk cannot have: the store
   * holds that hash at another length, or the header names one hash at two
   * lengths (one sha-256 has one preimage, so such a block can never complete)
   */
  CHUNK_LENGTH: 'ERR_CHUNK_LENGTH',
  /** a payload chunk is not present locally */
  CHUNK_MISSING: 'ERR_CHUNK_MISSING',
  /** the block is not in the store */
  BLOCK_NOT_FOUND: 'ERR_BLOCK_NOT_FOUND',
  /** a Dataset block's header fields: one missing, of the wrong kind or out of range, or one it may not carry */
  DATASET_FIELDS: 'ERR_DATASET_BLOCK_FIELDS',
  /** a Dataset block's payload: none, over MAX_DATASET_BYTES, or not the size its fields imply */
  DATASET_PAYLOAD: 'ERR_DATASET_BLOCK_PAYLOAD',
  /** an ids Dataset block that does not list its model as a parent, or whose model is not a ModelManifest */
  DATASET_PARENT: 'ERR_DATASET_BLOCK_PARENT',
  /** the store's index disagrees with the blocks and chunks it holds (found by verify, never raised) */
  INDEX: 'ERR_INDEX',
  /** bad argument from a local caller (not a peer) */
  INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT',
  /** the store is not started */
  NOT_STARTED: 'ERR_NOT_STARTED'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ChainErrorCode = typeof ChainErrorCode[keyof typeof ChainErrorCode]

/** An error the chain raises on purpose; `blockId` (hex) names the block when known. */
export class ChainError extends BlydError {
  readonly blockId?: string

  constructor (code: ChainErrorCode, message: string, options?: ErrorOptions & { blockId?: string }) {
    super(code, options?.blockId != null ? `${message} (block ${options.blockId})` : message, options)
    this.name = 'ChainError'
    this.blockId = options?.blockId
  }
}
