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
  /** a Delta block's header fields: one missing, of the wrong kind or out of range, or one it may not carry */
  DELTA_FIELDS: 'ERR_DELTA_BLOCK_FIELDS',
  /** a Delta block whose `codec` is not one of f32, int8, sparse, lowrank */
  DELTA_CODEC: 'ERR_DELTA_BLOCK_CODEC',
  /** a Delta block without a payload */
  DELTA_PAYLOAD: 'ERR_DELTA_BLOCK_PAYLOAD',
  /** a Delta block not listing its model manifest and a Layer block of its model and unit */
  DELTA_PARENT: 'ERR_DELTA_BLOCK_PARENT',
  /** a Proposal block's header fields */
  PROPOSAL_FIELDS: 'ERR_PROPOSAL_BLOCK_FIELDS',
  /** a Proposal block with a payload (it has none) */
  PROPOSAL_PAYLOAD: 'ERR_PROPOSAL_BLOCK_PAYLOAD',
  /** a Proposal block not listing its model manifest and its Dataset block */
  PROPOSAL_PARENT: 'ERR_PROPOSAL_BLOCK_PARENT',
  /** a Proposal block listing no Delta block, or one naming another model or base version */
  PROPOSAL_DELTAS: 'ERR_PROPOSAL_BLOCK_DELTAS',
  /** a Proposal block listing a Delta block someone else authored */
  PROPOSAL_DELTA_AUTHOR: 'ERR_PROPOSAL_BLOCK_DELTA_AUTHOR',
  /** a Proposal block listing two Delta blocks of one unit */
  PROPOSAL_DELTA_UNITS: 'ERR_PROPOSAL_BLOCK_DELTA_UNITS',
  /** an Attestation block's header fields (verdict, reason, seedSig) */
  ATTESTATION_FIELDS: 'ERR_ATTESTATION_BLOCK_FIELDS',
  /** an Attestation block without a payload, or one over MAX_ATTESTATION_BYTES */
  ATTESTATION_PAYLOAD: 'ERR_ATTESTATION_BLOCK_PAYLOAD',
  /** an Attestation block not listing its proposal, or whose proposal is not a Proposal of its model */
  ATTESTATION_PARENT: 'ERR_ATTESTATION_BLOCK_PARENT',
  /** an Attestation block whose seedSig does not verify against its author over the proposal id */
  ATTESTATION_SEED: 'ERR_ATTESTATION_BLOCK_SEED',
  /** a Motion block's header fields (kind, base) */
  MOTION_FIELDS: 'ERR_MOTION_BLOCK_FIELDS',
  /** a Motion block's payload: none, or not the size its kind allows */
  MOTION_PAYLOAD: 'ERR_MOTION_BLOCK_PAYLOAD',
  /** a Motion block not listing its model manifest, or whose model is not a ModelManifest */
  MOTION_PARENT: 'ERR_MOTION_BLOCK_PARENT',
  /** a Vote block's header fields */
  VOTE_FIELDS: 'ERR_VOTE_BLOCK_FIELDS',
  /** a Vote block with a payload (it has none) */
  VOTE_PAYLOAD: 'ERR_VOTE_BLOCK_PAYLOAD',
  /** a Vote block not listing its motion, or whose motion is not a Motion of its model */
  VOTE_PARENT: 'ERR_VOTE_BLOCK_PARENT',
  /** a Params block's header fields */
  PARAMS_FIELDS: 'ERR_PARAMS_BLOCK_FIELDS',
  /** a Params block's payload: none, or over MAX_PARAMS_BYTES */
  PARAMS_PAYLOAD: 'ERR_PARAMS_BLOCK_PAYLOAD',
  /** a Params block not listing its model manifest, or whose model is not a ModelManifest */
  PARAMS_PARENT: 'ERR_PARAMS_BLOCK_PARENT',
  /** a Params block not authored by its model manifest's author */
  PARAMS_AUTHOR: 'ERR_PARAMS_BLOCK_AUTHOR',
  /** a Receipt block's header fields: one missing, of the wrong kind, `receipts` not in 1..MAX_RECEIPTS_PER_BLOCK, or one it may not carry */
  RECEIPT_FIELDS: 'ERR_RECEIPT_BLOCK_FIELDS',
  /** a Receipt block's payload: none, or not the size of a batch of `receipts` receipts */
  RECEIPT_PAYLOAD: 'ERR_RECEIPT_BLOCK_PAYLOAD',
  /** a Receipt block not listing its model manifest, or whose model is not a ModelManifest */
  RECEIPT_PARENT: 'ERR_RECEIPT_BLOCK_PARENT',
  /** a Transfer block's header fields: one missing, of the wrong kind, an amount of 0, or one it may not carry */
  TRANSFER_FIELDS: 'ERR_TRANSFER_BLOCK_FIELDS',
  /** a Transfer block whose `to` is its author (a transfer to oneself moves nothing) */
  TRANSFER_RECIPIENT: 'ERR_TRANSFER_BLOCK_RECIPIENT',
  /** a Transfer block with a payload (it has none) */
  TRANSFER_PAYLOAD: 'ERR_TRANSFER_BLOCK_PAYLOAD',
  /** a Transfer block not listing its model manifest, or whose model is not a ModelManifest */
  TRANSFER_PARENT: 'ERR_TRANSFER_BLOCK_PARENT',
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
