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
  BlockEncoding: 'ERR_BLOCK_ENCODING',
  /** the id given with a block does not match sha-256 of its header */
  BlockId: 'ERR_BLOCK_ID',
  /** the Ed25519 signature does not verify against the author key */
  BlockSignature: 'ERR_BLOCK_SIGNATURE',
  /** a parent is not in the store (the block waits in the orphan pool) */
  UnknownParent: 'ERR_UNKNOWN_PARENT',
  /** type/chain mismatch or a per-type rule broken */
  BlockType: 'ERR_BLOCK_TYPE',
  /** the encoded header is larger than the limit */
  HeaderTooLarge: 'ERR_HEADER_TOO_LARGE',
  /** more parents than the limit */
  TooManyParents: 'ERR_TOO_MANY_PARENTS',
  /** payload or chunk size above the limits */
  PayloadTooLarge: 'ERR_PAYLOAD_TOO_LARGE',
  /** chunk count / chunk size / bytes given inconsistent with payload_size */
  PayloadSize: 'ERR_PAYLOAD_SIZE',
  /** a payload chunk whose bytes do not hash to the header's chunk hash */
  ChunkHash: 'ERR_CHUNK_HASH',
  /**
   * a block names a chunk hash at a length that chunk cannot have: the store
   * holds that hash at another length, or the header names one hash at two
   * lengths (one sha-256 has one preimage, so such a block can never complete)
   */
  ChunkLength: 'ERR_CHUNK_LENGTH',
  /** a payload chunk is not present locally */
  ChunkMissing: 'ERR_CHUNK_MISSING',
  /** the block is not in the store */
  BlockNotFound: 'ERR_BLOCK_NOT_FOUND',
  /** a Dataset block's header fields: one missing, of the wrong kind or out of range, or one it may not carry */
  DatasetFields: 'ERR_DATASET_BLOCK_FIELDS',
  /** a Dataset block's payload: none, over MAX_DATASET_BYTES, or not the size its fields imply */
  DatasetPayload: 'ERR_DATASET_BLOCK_PAYLOAD',
  /** an ids Dataset block that does not list its model as a parent, or whose model is not a ModelManifest */
  DatasetParent: 'ERR_DATASET_BLOCK_PARENT',
  /** bad argument from a local caller (not a peer) */
  InvalidArgument: 'ERR_INVALID_ARGUMENT',
  /** the store is not started */
  NotStarted: 'ERR_NOT_STARTED'
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
