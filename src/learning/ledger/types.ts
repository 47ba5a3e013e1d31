/**
 * What the ledger fold (src/learning/ledger/fold.ts) takes and computes:
 * every key and id is lowercase hex, every amount a bigint of base units,
 * every list in fold order. Two nodes holding the same blocks get equal
 * results whatever order the blocks arrived in.
 */

export type Hex = string

/** Where an event sits in the fold: a block's depth, then its id (protocols/ledger.md, "Order"). */
export interface Position {
  depth: number
  block: Hex
}

/** What produced an entry. */
export type EntryKind = 'genesis' | 'receipt' | 'transfer' | 'proposal' | 'validator' | 'fee'

/**
 * Why an entry was skipped (protocols/ledger.md, "Events"). Receipts:
 * `model`, `not-stage`, `client-signature`, `stage-signature` (not spent),
 * `replay`, `nonce-spent`, `self`, `unknown-version`, `unknown-governance`,
 * `range`, `positions`, `overflow`, `client-balance`. Transfers:
 * `nonce-spent`, `balance`. Rejected proposals: `proposer-balance`. Mints:
 * `supply`.
 */
export type SkipReason =
  | 'model' | 'not-stage' | 'client-signature' | 'stage-signature' | 'replay' | 'nonce-spent' | 'self'
  | 'unknown-version' | 'unknown-governance' | 'range' | 'positions' | 'overflow' | 'client-balance'
  | 'balance' | 'proposer-balance' | 'supply'

/** One movement (or mint) the fold judged, applied or skipped. */
export interface LedgerEntry {
  /** `genesis:<block>`, `receipt:<receipt id>:<block>`, `transfer:<block>`, `proposal:<p>`, `validator:<p>:<key>`, `fee:<p>:<key>` */
  id: string
  kind: EntryKind
  applied: boolean
  reason?: SkipReason
  /** the payer; null for a mint */
  from: Hex | null
  to: Hex
  amount: bigint
  /** the block at whose position it was folded */
  at: Position
  /** every block that produced it (the explanation), `at.block` included */
  blocks: Hex[]
  /** receipts: the receipt id; receipts and transfers: the nonce; proposals: the gain in micro-nats */
  receipt?: Hex
  nonce?: bigint
  gainMicroNats?: bigint
  /** receipts: both signatures verified when folded */
  signatures?: { client: boolean, stage: boolean }
}

/** A Receipt block whose receipts could not be judged. */
export interface BlockProblem {
  block: Hex
  at: Position
  /** `payload-missing` (waits: nothing judged or spent), `malformed` (the batch does not decode), `root` (its Merkle root is not the header's) */
  reason: 'payload-missing' | 'malformed' | 'root'
  error?: string
}

/** An invariant the fold found broken (never expected: a bug or a tampered result). */
export interface LedgerViolation {
  /** `supply` (sum of balances != minted), `negative`, `double-credit`, `unsigned-credit` */
  invariant: 'supply' | 'negative' | 'double-credit' | 'unsigned-credit'
  at?: Position
  message: string
}

/** The state of one model's ledger. */
export interface LedgerResult {
  model: Hex
  /** key -> balance (keys that ever held a balance; zero balances kept) */
  balances: Map<Hex, bigint>
  /** total minted (genesis, proposers, validators) */
  minted: bigint
  /** total paid by clients to stages for receipts */
  paid: bigint
  /** total moved by transfers */
  transferred: bigint
  /** total paid by rejected proposers to validators */
  fees: bigint
  /** fold order */
  entries: LedgerEntry[]
  /** Receipt blocks not judged, fold order */
  problems: BlockProblem[]
  counts: {
    /** ledger blocks folded (Receipt and Transfer) */
    blocks: number
    receiptsPaid: number
    receiptsSkipped: number
    transfersApplied: number
    transfersSkipped: number
  }
  /** invariant checks run (one per block position) */
  checks: number
  violations: LedgerViolation[]
}

/** A receipt of a decoded batch as the fold uses it (hex strings; the signatures already checked). */
export interface ReceiptItem {
  id: Hex
  model: Hex
  version: Hex
  governance: Hex
  client: Hex
  stage: Hex
  nonce: bigint
  layerStart: number
  layerEnd: number
  positions: number
  tokens: number
  signatures: { client: boolean, stage: boolean }
}

/** The Receipt block's receipts, or why there are none to judge. */
export type ReceiptBatchInput =
  | { status: 'ok', receipts: ReceiptItem[] }
  | { status: 'payload-missing' | 'malformed' | 'root', error?: string }

/** What a receipt is judged against: the model's versions, governance prices and decoder layers. */
export interface ReceiptContext {
  model: Hex
  versions: ReadonlySet<Hex>
  /** governance state id -> priceLayerPosition (states without params absent) */
  prices: ReadonlyMap<Hex, bigint>
  /** the manifest's `units` - 2, or null when the manifest does not say */
  decoderLayers: number | null
}

/** A proposal whose status moves BLY. */
export interface ProposalEvent {
  proposal: Hex
  proposer: Hex
  status: 'accepted' | 'rejected'
  reason: string
  gainMicroNats: bigint
  rewardPerMicroNat: bigint
  validatorReward: bigint
  /** validators whose counted attestation counted as accept / reject, key ascending, with that attestation */
  accepters: Array<{ key: Hex, attestation: Hex }>
  rejecters: Array<{ key: Hex, attestation: Hex }>
  /** the proposal and its counted attestations */
  blocks: Hex[]
}
