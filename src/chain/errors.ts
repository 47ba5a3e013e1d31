import { BlydError } from '../protocols/errors.ts'

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
  /** a Delta block's header fields: one missing, of the wrong kind or out of range, or one it may not carry */
  DeltaFields: 'ERR_DELTA_BLOCK_FIELDS',
  /** a Delta block whose `codec` is not one of f32, int8, sparse, lowrank */
  DeltaCodec: 'ERR_DELTA_BLOCK_CODEC',
  /** a Delta block without a payload */
  DeltaPayload: 'ERR_DELTA_BLOCK_PAYLOAD',
  /** a Delta block not listing its model manifest and a Layer block of its model and unit */
  DeltaParent: 'ERR_DELTA_BLOCK_PARENT',
  /** a Proposal block's header fields */
  ProposalFields: 'ERR_PROPOSAL_BLOCK_FIELDS',
  /** a Proposal block with a payload (it has none) */
  ProposalPayload: 'ERR_PROPOSAL_BLOCK_PAYLOAD',
  /** a Proposal block not listing its model manifest and its Dataset block */
  ProposalParent: 'ERR_PROPOSAL_BLOCK_PARENT',
  /** a Proposal block listing no Delta block, or one naming another model or base version */
  ProposalDeltas: 'ERR_PROPOSAL_BLOCK_DELTAS',
  /** a Proposal block listing a Delta block someone else authored */
  ProposalDeltaAuthor: 'ERR_PROPOSAL_BLOCK_DELTA_AUTHOR',
  /** a Proposal block listing two Delta blocks of one unit */
  ProposalDeltaUnits: 'ERR_PROPOSAL_BLOCK_DELTA_UNITS',
  /** an Attestation block's header fields (verdict, reason, seedSig) */
  AttestationFields: 'ERR_ATTESTATION_BLOCK_FIELDS',
  /** an Attestation block without a payload, or one over MAX_ATTESTATION_BYTES */
  AttestationPayload: 'ERR_ATTESTATION_BLOCK_PAYLOAD',
  /** an Attestation block not listing its proposal, or whose proposal is not a Proposal of its model */
  AttestationParent: 'ERR_ATTESTATION_BLOCK_PARENT',
  /** an Attestation block whose seedSig does not verify against its author over the proposal id */
  AttestationSeed: 'ERR_ATTESTATION_BLOCK_SEED',
  /** a Motion block's header fields (kind, base) */
  MotionFields: 'ERR_MOTION_BLOCK_FIELDS',
  /** a Motion block's payload: none, or not the size its kind allows */
  MotionPayload: 'ERR_MOTION_BLOCK_PAYLOAD',
  /** a Motion block not listing its model manifest, or whose model is not a ModelManifest */
  MotionParent: 'ERR_MOTION_BLOCK_PARENT',
  /** a Vote block's header fields */
  VoteFields: 'ERR_VOTE_BLOCK_FIELDS',
  /** a Vote block with a payload (it has none) */
  VotePayload: 'ERR_VOTE_BLOCK_PAYLOAD',
  /** a Vote block not listing its motion, or whose motion is not a Motion of its model */
  VoteParent: 'ERR_VOTE_BLOCK_PARENT',
  /** a Params block's header fields */
  ParamsFields: 'ERR_PARAMS_BLOCK_FIELDS',
  /** a Params block's payload: none, or over MAX_PARAMS_BYTES */
  ParamsPayload: 'ERR_PARAMS_BLOCK_PAYLOAD',
  /** a Params block not listing its model manifest, or whose model is not a ModelManifest */
  ParamsParent: 'ERR_PARAMS_BLOCK_PARENT',
  /** a Params block not authored by its model manifest's author */
  ParamsAuthor: 'ERR_PARAMS_BLOCK_AUTHOR',
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
