import { BlydError } from '../protocols/errors.ts'

/**
 * Stable codes of the errors the Proof-of-Learning path raises: proposing a
 * checkpoint, reading a version's weights, the validator set commands.
 * (A validator's findings about a proposal are attestation reasons, not
 * errors.)
 */
export const LearningErrorCode = {
  /** no model named, and not exactly one model on chain A */
  MODEL: 'ERR_LEARNING_MODEL',
  /** the model has no usable genesis Params block (imported before Proof-of-Learning, or its payload is missing) */
  NO_GENESIS: 'ERR_LEARNING_NO_GENESIS',
  /** the checkpoint is not the model's architecture (config or tensor names/shapes differ) */
  CHECKPOINT: 'ERR_LEARNING_CHECKPOINT',
  /** the checkpoint equals the live weights: nothing to propose */
  NO_CHANGE: 'ERR_LEARNING_NO_CHANGE',
  /** a block the work needs (a layer, a delta, a dataset) or its payload is not stored locally */
  PAYLOAD_MISSING: 'ERR_LEARNING_PAYLOAD_MISSING',
  /** an accepted delta of the version that does not decode or apply: the version's weights cannot be computed */
  BAD_VERSION_DELTA: 'ERR_LEARNING_BAD_VERSION_DELTA',
  /** no proposal with that id (or prefix) */
  PROPOSAL_NOT_FOUND: 'ERR_LEARNING_PROPOSAL_NOT_FOUND',
  /** an id prefix that matches several proposals */
  AMBIGUOUS: 'ERR_LEARNING_AMBIGUOUS',
  /** a validator key that is neither 64 hex characters nor an Ed25519 peer id */
  KEY: 'ERR_LEARNING_KEY',
  /** this node's key is not in the model's validator set: it may not move motions */
  NOT_VALIDATOR: 'ERR_LEARNING_NOT_VALIDATOR',
  /** the change is void from the start: adding a member, removing a non-member, removing the last validator */
  MOTION: 'ERR_LEARNING_MOTION',
  /** options out of range (codec, density, rank, windows) */
  OPTION: 'ERR_LEARNING_OPTION'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type LearningErrorCode = typeof LearningErrorCode[keyof typeof LearningErrorCode]

export class LearningError extends BlydError {
  constructor (code: LearningErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'LearningError'
  }
}
