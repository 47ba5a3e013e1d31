/**
 * What the fold computes (src/learning/fold/fold.ts): the state of a
 * model's learning path as a pure function of the blocks (and payloads) a
 * node holds. Every id and key is lowercase hex; every list has a fixed
 * order (stated per field), so two nodes holding the same blocks get
 * deep-equal results whatever order the blocks arrived in.
 */
import type { DatasetMeasurement } from '../../protocols/attestation.ts'
import type { MotionBody } from '../../protocols/motion.ts'
import type { Params, ParamsBody } from '../../protocols/params.ts'

export type Hex = string

/**
 * The eval window numbers (ascending) of a dataset, as the model in question
 * reads it (text datasets are tokenized with its tokenizer). Injected into
 * the fold: the daemon passes a cached reader of the stored dataset
 * (eval-windows.ts), tests may pass their own. Throws when the dataset
 * cannot be read (payload not stored yet, no tokenizer): the attestations
 * that need it are then reported, not counted.
 */
export type EvalWindowsProvider = (datasetId: Uint8Array) => Promise<ArrayLike<number>>

// ---- records: the blocks of one model, decoded (blocks.ts) ----

export interface BlockRef {
  id: Uint8Array
  idHex: Hex
  author: Uint8Array
  authorHex: Hex
}

export interface ParamsRecord extends BlockRef {
  /** undefined when the payload is not stored yet */
  body?: ParamsBody
  /** why the payload does not decode (a ParamsError code and message) */
  error?: string
}

export interface MotionRecord extends BlockRef {
  kind: string
  base: Hex
  body?: MotionBody
  payloadMissing: boolean
  error?: string
}

export interface VoteRecord extends BlockRef {
  motion: Hex
}

export interface DeltaRef {
  id: Hex
  unit: number
  codec: string
}

export interface ProposalRecord extends BlockRef {
  base: Hex
  governance: Hex
  dataset: Uint8Array
  datasetHex: Hex
  claimedBase: bigint
  claimedAfter: bigint
  /** its Delta parents, by unit ascending */
  deltas: DeltaRef[]
}

export interface AttestationRecord extends BlockRef {
  proposal: Hex
  verdict: string
  reason: string
  seedSig: Uint8Array
  measurements?: DatasetMeasurement[]
  payloadMissing: boolean
  error?: string
}

/** Every learning block of one model, each list by id ascending. */
export interface ModelRecords {
  model: Uint8Array
  modelHex: Hex
  /** the manifest's author: the first validator, the only Params author */
  author: Uint8Array
  authorHex: Hex
  params: ParamsRecord[]
  motions: MotionRecord[]
  votes: VoteRecord[]
  proposals: ProposalRecord[]
  attestations: AttestationRecord[]
}

// ---- results ----

/** The genesis params: the one Params block of the manifest's author. */
export type GenesisState =
  | { status: 'ok', block: Hex, params: Params }
  /** no Params block by the manifest's author (e.g. a model imported before Params existed) */
  | { status: 'missing' }
  /** more than one: none is used */
  | { status: 'ambiguous', blocks: Hex[] }
  /** its payload is not stored yet */
  | { status: 'payload-missing', block: Hex }
  /** its payload does not decode, or its keys over the defaults break a rule */
  | { status: 'invalid', block: Hex, error: string }

/** The genesis state as the fold reports it (params in JSON form). */
export type GenesisJson = Exclude<GenesisState, { status: 'ok' }> | { status: 'ok', block: Hex, params: ParamsJson }

/** Params in JSON form (dataset ids hex). */
export interface ParamsJson {
  quorumNum: number
  quorumDen: number
  minGainPpm: number
  maxRegressionPpm: number
  tCritMilli: number
  sampleWindows: number
  regressionDatasets: Hex[]
  genesisAllocation: number
  priceLayerPosition: number
  rewardPerMicroNat: number
  validatorReward: number
}

/** One state of the governance history. */
export interface GovernanceState {
  /** G: G0, then sha256("bly/governance/v1" || G || motion) per applied motion */
  id: Hex
  /** 0 for G0 */
  index: number
  /** the motion that produced it (null for G0) */
  motion: Hex | null
  /** the validator keys, ascending */
  validators: Hex[]
  /** null when the genesis params are not usable */
  params: ParamsJson | null
  /** attestations / signatures needed: ceil(n x quorumNum / quorumDen); null without params */
  quorum: number | null
}

export type MotionStatus = 'applied' | 'pending' | 'void'

/**
 * Why a motion has its status. pending: `quorum` (waiting for signatures),
 * `payload-missing`, `no-params`; void: `superseded` (another motion on its
 * base reached quorum with a smaller id), `stale` (its base is a past state:
 * another motion applied there), `unknown-base` (its base is no state of the
 * history), `not-member` (its author is not in the set at its base),
 * `malformed` (payload), `already-member`, `not-a-validator` (remove of a key
 * outside the set), `last-validator`, `invalid-params`.
 */
export interface MotionExplain {
  id: Hex
  author: Hex
  kind: string
  base: Hex
  status: MotionStatus
  reason: string
  /** validators.add / validators.remove: the key */
  key?: Hex
  /** params.set: the keys it sets */
  params?: Partial<ParamsJson>
  /** distinct signers (the author and the voters), ascending, with whether each is in the set at the base */
  signers: Array<{ key: Hex, counted: boolean }>
  /** signers in the set at the base */
  count: number
  /** the quorum at the base (null when the base is unknown or has no params) */
  quorum: number | null
  /** applied: the state it produced */
  result?: Hex
}

export type ProposalStatus = 'pending' | 'accepted' | 'rejected'

/**
 * Why an attestation is not counted: `not-validator` (author outside the
 * set of the proposal's governance state), `equivocation` (its author
 * attested the proposal more than once: all of them are ignored),
 * `bad-seed` (seedSig does not verify), `payload-missing`, `malformed`
 * (payload does not decode), `datasets` (not the proposal's dataset then the
 * regression datasets in params order), `sample` (windows differ from the
 * sample its seedSig gives), `windows-unavailable` (this node cannot read a
 * dataset's eval windows yet), `no-governance` (the proposal's governance
 * state is unknown or has no params).
 */
export type IgnoredReason = 'not-validator' | 'equivocation' | 'bad-seed' | 'payload-missing' | 'malformed' | 'datasets' | 'sample' | 'windows-unavailable' | 'no-governance'

export interface AttestationExplain {
  id: Hex
  validator: Hex
  /** the header's verdict and reason, as published */
  verdict: string
  reason: string
  counted: boolean
  ignored?: IgnoredReason
  /** counted: what it counts as (an accept whose numbers fail the rule counts as a reject) */
  effectiveVerdict?: 'accept' | 'reject'
  effectiveReason?: string
  /** the header said accept, the numbers say reject */
  verdictMismatch?: boolean
  /** from its numbers (display only): relative gain, mean losses per window (nats), t statistic, windows */
  gain?: number | null
  gainPpm?: string | null
  baseLoss?: number | null
  candidateLoss?: number | null
  t?: number | null
  windows?: number
}

/**
 * Why a proposal has its status. accepted: `ok`. rejected: `stale` (reached
 * quorum while its base was not the live version), `superseded` (another
 * proposal on its base reached quorum with a smaller id), `stale-governance`
 * (its governance state is not in the history, or older than its base
 * version's), or the most common reason of its rejecting attestations (ties:
 * the smallest code). pending: `quorum` (still reachable), `no-params`.
 */
export interface ProposalExplain {
  id: Hex
  author: Hex
  base: Hex
  governance: Hex
  dataset: Hex
  deltas: DeltaRef[]
  claimedBase: string
  claimedAfter: string
  status: ProposalStatus
  reason: string
  /** accepted: the version it produced */
  version?: Hex
  /** validators in its governance state's set (n), and the quorum there */
  validators: number | null
  quorum: number | null
  /** counted attestations */
  accepts: number
  rejects: number
  /** median gain of the counted accepting attestations (display); null when none */
  gain: number | null
  /** by id ascending */
  attestations: AttestationExplain[]
}

/** One version of the model's history. */
export interface VersionInfo {
  /** V: V0, then sha256("bly/version/v1" || V || proposal) per accepted proposal */
  id: Hex
  index: number
  /** the proposal that produced it (null for V0) */
  proposal: Hex | null
  /** the governance state that proposal was judged in (null for V0) */
  governance: Hex | null
  /** every accepted delta up to this version, in acceptance order (then unit order within a proposal) */
  acceptedDeltas: Array<{ proposal: Hex, delta: Hex, unit: number }>
  /** per unit (ascending) with deltas: the delta ids to apply in order */
  units: Array<{ unit: number, deltas: Hex[] }>
}

/** The state of a model's learning path. */
export interface ModelFold {
  model: Hex
  author: Hex
  genesis: GenesisJson
  governance: {
    /** G0 first; the last is the current state */
    history: GovernanceState[]
    current: GovernanceState
    /** by id ascending */
    motions: MotionExplain[]
  }
  /** by id ascending */
  proposals: ProposalExplain[]
  /** V0 first; the last is the live version */
  versions: VersionInfo[]
  live: VersionInfo
}
