/**
 * The header fields of the learning blocks (normative text:
 * protocols/learning-blocks.md): Delta (chain B), Proposal, Attestation,
 * Motion, Vote and Params (chain A), the small value sets they use, and the
 * domains of the ids and signatures the fold derives from them.
 *
 * A learning block carries exactly the fields listed for its type (no
 * others). Ids (model, base, governance, dataset, proposal, motion) are
 * 32-byte block or state ids; `seedSig` is a 64-byte Ed25519 signature.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */

/** A Delta block (type 17, chain B): one unit's weight difference against a version. */
export const DeltaField = {
  /** bytes32: the model manifest id */
  MODEL: 'model',
  /** uint32: the unit (0 embedding, 1..L decoder layers, L+1 final norm + head) */
  UNIT: 'unit',
  /** bytes32: the version id the delta applies to */
  BASE: 'base',
  /** string: one of DELTA_CODECS (protocols/delta.ts) */
  CODEC: 'codec',
  /** uint >= 1: tensors in the payload */
  TENSORS: 'tensors'
} as const

/** A Proposal block (type 4, chain A): a set of Delta blocks proposed against a version. No payload. */
export const ProposalField = {
  MODEL: 'model',
  /** bytes32: the version id the deltas apply to */
  BASE: 'base',
  /** bytes32: the governance state id whose validator set and parameters judge the proposal */
  GOVERNANCE: 'governance',
  /** bytes32: the Dataset block the validators sample */
  DATASET: 'dataset',
  /** uint: the proposer's own eval loss of the base, micro-nats (information only) */
  CLAIMED_BASE: 'claimedBase',
  /** uint: the proposer's own eval loss after the deltas, micro-nats (information only) */
  CLAIMED_AFTER: 'claimedAfter'
} as const

/** An Attestation block (type 5, chain A): one validator's measurement of a proposal. */
export const AttestationField = {
  MODEL: 'model',
  /** bytes32: the Proposal block */
  PROPOSAL: 'proposal',
  /** string: `accept` or `reject` */
  VERDICT: 'verdict',
  /** string: a reason code (`ok` exactly when the verdict is accept) */
  REASON: 'reason',
  /** bytes64: Ed25519 over utf8(POL_SEED_DOMAIN) || proposalId by the author */
  SEED_SIG: 'seedSig'
} as const

export const Verdict = {
  ACCEPT: 'accept',
  REJECT: 'reject'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type Verdict = typeof Verdict[keyof typeof Verdict]

/**
 * Reason codes validators use (an attestation may carry any code matching
 * REASON_PATTERN; these are the ones blyd writes and the fold derives).
 */
export const Reason = {
  /** accepted */
  OK: 'ok',
  /** the proposal's base is not the live version (or its governance state is not current) */
  STALE: 'stale',
  /** a delta payload does not decode */
  MALFORMED: 'malformed',
  /** a delta holds NaN or ±Inf */
  NON_FINITE: 'non-finite',
  /** a delta's tensors do not match the model's shapes */
  SHAPE: 'shape',
  /** a delta for another model */
  MODEL: 'model',
  /** a delta this node had before: the same Delta blocks in an earlier proposal, or the same payload or body as an earlier Delta block by another author or in a proposal (protocols/attestation.md) */
  DUPLICATE: 'duplicate',
  /** a delta payload larger than its unit can need (refused before it is fetched or decoded) */
  OVERSIZE: 'oversize',
  /** the proposal's dataset (or a regression dataset) cannot be read as the model's data (e.g. ids outside its vocabulary) */
  DATASET: 'dataset',
  /** fewer than 2 sampled windows: no paired test possible */
  TOO_FEW_WINDOWS: 'too-few-windows',
  /** relative gain below minGainPpm */
  INSUFFICIENT_GAIN: 'insufficient-gain',
  /** the paired t statistic below tCritMilli / 1000 */
  NOT_SIGNIFICANT: 'not-significant',
  /** a regression dataset's loss rose more than maxRegressionPpm */
  REGRESSION: 'regression'
} as const

/** A reason code: 1 to 32 characters of lowercase letters, digits and '-', starting with a letter. */
export const REASON_PATTERN = /^[a-z][a-z0-9-]{0,31}$/

/** A Motion block (type 6, chain A): a governance change proposed against a governance state. */
export const MotionField = {
  MODEL: 'model',
  /** string: one of MotionKind */
  KIND: 'kind',
  /** bytes32: the governance state id the motion applies to */
  BASE: 'base'
} as const

export const MotionKind = {
  /** payload: the 32-byte Ed25519 public key to add */
  ADD_VALIDATOR: 'validators.add',
  /** payload: the 32-byte Ed25519 public key to remove */
  REMOVE_VALIDATOR: 'validators.remove',
  /** payload: a canonical params body (protocols/params.md): the keys it holds are set */
  SET_PARAMS: 'params.set'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type MotionKind = typeof MotionKind[keyof typeof MotionKind]

export function isMotionKind (value: unknown): value is MotionKind {
  return value === MotionKind.ADD_VALIDATOR || value === MotionKind.REMOVE_VALIDATOR || value === MotionKind.SET_PARAMS
}

/** A Vote block (type 7, chain A): its author signs a motion. No payload. */
export const VoteField = {
  MODEL: 'model',
  /** bytes32: the Motion block */
  MOTION: 'motion'
} as const

/** A Params block (type 8, chain A): the genesis parameters, by the manifest's author. */
export const ParamsField = {
  MODEL: 'model'
} as const

/** Domain of a validator's sample seed signature: Ed25519 over utf8(domain) || proposalId. */
export const POL_SEED_DOMAIN = 'bly/pol-seed/v1'

/** Domain of version ids: V0 = sha256(domain || modelId), V' = sha256(domain || V || proposalId). */
export const VERSION_DOMAIN = 'bly/version/v1'

/** Domain of governance state ids: G0 = sha256(domain || modelId), G' = sha256(domain || G || motionId). */
export const GOVERNANCE_DOMAIN = 'bly/governance/v1'
