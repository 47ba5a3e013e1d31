/**
 * IPC shapes of the learning path (Proof-of-Learning): `delta.propose`,
 * `proposals`, `proposal.show`, `validators`, and the `learning` part of
 * `status`. Field names written in issue 11 (proposalId, deltaIds, bytes,
 * compressionRatio, maxAbsError; status, attestations, gain, reason; model,
 * validators, key, peerId, quorum, pending) are an interface: add, never
 * rename. Ids are lowercase hex; losses in micro-nats are integers, in nats
 * floats (display).
 */

/** Params of `delta.propose`: the daemon reads `checkpoint` (absolute: the socket is local, the daemon's cwd is not the caller's). */
export interface ProposeParams {
  /** model id (hex or unique prefix of >= 8); default: the only model on chain A */
  model?: string
  checkpoint: string
  /** the dataset the validators sample: name, or id (prefix) */
  dataset: string
  /** f32 (default), int8, sparse or lowrank */
  codec?: 'f32' | 'int8' | 'sparse' | 'lowrank'
  /** sparse: fraction of each tensor's elements kept, (0, 1] (default 0.01) */
  density?: number
  /** lowrank: rank of each 2-D tensor (default 16) */
  rank?: number
  /** eval windows the claimed losses are measured on (default 64) */
  claimWindows?: number
}

/** Result of `delta.propose`. */
export interface ProposeResultJson {
  /** the Proposal block */
  proposalId: string
  /** its Delta blocks, unit ascending */
  deltaIds: string[]
  /** payload bytes of all deltas */
  bytes: number
  /** 4 x changed parameters / bytes */
  compressionRatio: number
  /** max |decoded - exact difference| over every tensor */
  maxAbsError: number
  model: string
  /** the live version the deltas apply to */
  base: string
  /** the governance state that judges the proposal */
  governance: string
  dataset: string
  codec: string
  /** parameters of the tensors the deltas carry */
  changedParams: number
  /** |decoded - exact|_F / |exact|_F over the changed tensors */
  relFrobError: number
  /** elements whose live + diff (in f32) is not the checkpoint's value (see weight-diff.ts) */
  inexact: number
  units: Array<{ unit: number, delta: string, bytes: number, tensors: number, params: number, maxAbsError: number }>
  /** the proposer's own measure (information only; the acceptance rule never reads it) */
  claimed: {
    windows: number
    /** mean eval loss of the live weights and of the candidate, micro-nats (the Proposal's claimedBase / claimedAfter) */
    base: number
    after: number
    /** the same in nats */
    baseLoss: number
    afterLoss: number
  }
}

/** Params of `proposals`. */
export interface ProposalsParams {
  /** only this model's (default: every model's) */
  model?: string
}

/** One attestation of a proposal as the fold judged it. */
export interface AttestationJson {
  /** the Attestation block */
  id: string
  /** its author's key */
  validator: string
  /** the header's verdict and reason, as published */
  verdict: string
  reason: string
  /** counted toward the status (else `ignored` says why) */
  counted: boolean
  ignored?: string
  /** what it counts as: the rule re-applied to its numbers */
  effectiveVerdict?: 'accept' | 'reject'
  effectiveReason?: string
  verdictMismatch?: boolean
  /** relative gain (base - candidate) / base; mean losses per window in nats; paired t; windows measured */
  gain?: number | null
  gainPpm?: string | null
  baseLoss?: number | null
  candidateLoss?: number | null
  t?: number | null
  windows?: number
}

/** A proposal, as `proposals` and `proposal.show` give it. */
export interface ProposalJson {
  model: string
  id: string
  author: string
  /** the version it applies to, the governance state judging it, the dataset sampled */
  base: string
  governance: string
  dataset: string
  deltas: Array<{ id: string, unit: number, codec: string }>
  /** the proposer's claims, micro-nats (decimal strings) */
  claimedBase: string
  claimedAfter: string
  status: 'pending' | 'accepted' | 'rejected'
  /** accepted: `ok`; rejected: why (stale, superseded, or the most common reason of the rejecting attestations); pending: `quorum` or `no-params` */
  reason: string
  /** accepted: the version it produced */
  version?: string
  /** validators in its governance state (n) and the quorum there */
  validators: number | null
  quorum: number | null
  /** counted accepting and rejecting attestations */
  accepts: number
  rejects: number
  /** median gain of the counted accepting attestations; null when none */
  gain: number | null
  attestations: AttestationJson[]
}

export interface ProposalsResult {
  /** by model, then id */
  proposals: ProposalJson[]
}

/** Params of `proposal.show`. */
export interface ProposalShowParams {
  /** proposal id, or a unique prefix of >= 8 hex characters */
  id: string
  model?: string
}

/** Params of `validators`: list, or move one change (publishes a Motion, or a Vote on an identical pending motion). */
export interface ValidatorsParams {
  model?: string
  /** a key to add: 64 hex characters (raw Ed25519 public key) or an Ed25519 peer id */
  add?: string
  /** a key to remove */
  remove?: string
}

export interface ValidatorJson {
  /** raw Ed25519 public key, hex */
  key: string
  peerId: string
}

/** A pending motion of the current governance state. */
export interface MotionJson {
  id: string
  author: string
  kind: string
  key?: string
  peerId?: string
  /** params.set: the keys it sets */
  params?: Record<string, unknown>
  /** distinct members of the set who signed it (author and voters), and the quorum */
  count: number
  quorum: number | null
  signers: string[]
}

/** Result of `validators`. */
export interface ValidatorsResult {
  model: string
  /** the current governance state id */
  governance: string
  validators: ValidatorJson[]
  /** signatures (motions) and attestations (proposals) needed now */
  quorum: number | null
  pending: MotionJson[]
  /** --add / --remove: what this call published */
  published?: {
    /** a new motion, or a vote for an identical pending one */
    kind: 'motion' | 'vote'
    /** the block written */
    block: string
    motion: string
    change: 'validators.add' | 'validators.remove'
    key: string
    /** the motion now applied (quorum reached) */
    applied: boolean
  }
}

/** The validator service as `status` shows it (`learning.validator`). */
export interface ValidatorStatusJson {
  /** this node's key */
  key: string
  /** models whose current validator set holds this key */
  models: string[]
  /** the proposal being measured now, or null */
  validating: { model: string, proposal: string, phase: string, since: number } | null
  /** attestations this service published since the daemon started */
  attested: number
  /** the last one */
  last: { model: string, proposal: string, attestation: string, verdict: string, reason: string, ms: number, at: number } | null
  /** the last local failure (a payload it could not fetch, an error): retried later */
  lastError: { model?: string, proposal?: string, code: string, message: string, at: number } | null
  /** proposals put off: why (payload-missing, unknown-base, own-accept-pending, retry) */
  waiting: Array<{ model: string, proposal: string, why: string }>
  /** times a window waited for inference to be idle, and the ms waited */
  deferrals: number
  deferredMs: number
}

export interface LearningStatusJson {
  validator: ValidatorStatusJson
  /** the daemon's recent training jobs (`train` over IPC), newest last */
  training?: TrainJobJson[]
}

/**
 * One training job of a daemon, as status and the dashboard show it: its
 * loss curve holds every `lossStride`-th step's mean train loss (the stride
 * doubles whenever the curve would pass its bound, so a long job keeps a
 * bounded, evenly spaced curve).
 */
export interface TrainJobJson {
  /** the daemon's job number, from 1 */
  id: number
  /** the model as asked (hex, prefix, or null: the only one) */
  model: string | null
  dataset: string
  state: 'queued' | 'running' | 'done' | 'failed'
  steps: number
  /** steps done */
  step: number
  /** mean train loss of steps lossStride, 2 x lossStride, ... */
  losses: number[]
  lossStride: number
  /** eval losses measured (step 0: before training) */
  evalLosses: Array<{ step: number, loss: number }>
  tokensPerSecond: number | null
  proposalId: string | null
  error: string | null
  /** ms since the epoch */
  queuedAt: number
  endedAt: number | null
}

/** `train` (issue 12): a training job in the daemon, between its inference work. */
export interface TrainParams {
  /** model id (hex or unique prefix of >= 8); default: the only model on chain A */
  model?: string
  /** dataset name or id prefix */
  dataset: string
  steps: number
  lr?: number
  batch?: number
  /** tokens per training sequence (the dataset's windows are cut into pieces of at most this) */
  seq?: number
  /** LoRA rank (ignored with full) */
  loraRank?: number
  full?: boolean
  seed?: number
  /** eval loss every this many steps (0: only before and after) */
  evalEvery?: number
  propose?: boolean
  /** 'mesh': through the span holders of the model over /bly/train/1.0.0 (pipeline-parallel); default 'local' */
  via?: 'local' | 'mesh'
}

/** The result of `blyd train` / `train` (the interface of issue 12: keep the field names). */
export interface TrainResultJson {
  steps: number
  /** mean train loss of each step */
  losses: number[]
  /** eval loss before the first step and after the last */
  evalLoss: { before: number, after: number }
  tokensPerSecond: number
  /** the proposal written with `propose`, else null */
  proposalId: string | null
}

/** Streamed by `train`: a step done, or an eval loss measured (step 0: before training). */
export type TrainProgressJson =
  | { kind: 'step', step: number, steps: number, loss: number, tokensPerSecond: number }
  | { kind: 'eval', step: number, loss: number }
