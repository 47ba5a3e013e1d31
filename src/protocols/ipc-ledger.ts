/**
 * IPC shapes of the ledger (docs/ledger.md): `rewards.balance`,
 * `rewards.history`, `rewards.explain`, `rewards.send`, `rewards.verify`
 * and the ledger part of `status`. Amounts are decimal strings of base
 * units (u64 values do not fit a JSON number); keys and ids lowercase hex;
 * `peer` is the libp2p peer id of a key.
 */

/** Params of `rewards.balance` and `rewards.history`. */
export interface RewardsParams {
  /** a peer id (12D3KooW...) or a 64-hex Ed25519 public key; default this node */
  peer?: string
  /** model id (hex or a unique prefix of >= 8); default the only model on chain A */
  model?: string
}

/** Params of `rewards.explain`. */
export interface RewardsExplainParams {
  /** an entry id (`receipt:...`, `transfer:...`, `genesis:...`, `proposal:...`, `validator:...`, `fee:...`) or a unique prefix with >= 8 hex */
  entry: string
  model?: string
}

/** Params of `rewards.send`. */
export interface RewardsSendParams {
  /** a peer id or a 64-hex Ed25519 public key */
  to: string
  /** base units, a decimal integer 1 .. 2^64 - 1 */
  amount: string
  model?: string
}

/** One entry of the ledger fold. */
export interface LedgerEntryJson {
  id: string
  kind: 'genesis' | 'receipt' | 'transfer' | 'proposal' | 'validator' | 'fee'
  applied: boolean
  /** why it was skipped (protocols/ledger.md) */
  reason?: string
  /** the payer's key; null for a mint */
  from: string | null
  to: string
  amount: string
  /** the block at whose position it was folded, and that block's depth */
  block: string
  depth: number
  /** every block that produced it */
  blocks: string[]
  receipt?: string
  nonce?: string
  gainMicroNats?: string
}

/** Result of `rewards.balance`. */
export interface RewardsBalanceResult {
  model: string
  peer: string
  key: string
  balance: string
  /** the model's total minted (every balance sums to it) */
  minted: string
}

/** One line of `rewards.history`: the entry, what it did to this key, and the key's balance after it. */
export interface HistoryEntryJson extends LedgerEntryJson {
  change: string
  balanceAfter: string
}

/** Result of `rewards.history`. */
export interface RewardsHistoryResult {
  model: string
  peer: string
  key: string
  balance: string
  /** fold order */
  entries: HistoryEntryJson[]
}

/** A block that produced an entry. */
export interface ExplainBlockJson {
  id: string
  type: string
  author: string
  depth: number
  /** ms since the epoch (the author's claim) */
  timestamp: number
}

/** A receipt as stored in a Receipt block. */
export interface ReceiptJson {
  id: string
  model: string
  version: string
  governance: string
  session: string
  client: string
  stage: string
  nonce: string
  layerStart: number
  layerEnd: number
  positions: number
  tokens: number
  time: number
}

/** Result of `rewards.explain`. */
export interface RewardsExplainResult {
  model: string
  entry: LedgerEntryJson
  /** the blocks of `entry.blocks`, in that order */
  blocks: ExplainBlockJson[]
  /** receipt entries: the receipt and the price that applied */
  receipt?: ReceiptJson & { priceLayerPosition: string | null }
  /** proposal, validator and fee entries: the proposal's status in the learning fold */
  proposal?: { id: string, status: string, reason: string, governance: string, accepts: number, rejects: number }
}

/** Result of `rewards.send`. */
export interface RewardsSendResult {
  model: string
  /** the Transfer block id */
  transfer: string
  from: string
  to: string
  amount: string
  nonce: string
  /** the sender's balance before the transfer, and after it once folded */
  balanceBefore: string
  balanceAfter: string
}

/** One model's ledger as `rewards.verify` checked it. */
export interface LedgerSummaryJson {
  model: string
  ok: boolean
  /** Receipt and Transfer blocks folded */
  blocks: number
  entries: number
  receiptsPaid: number
  receiptsSkipped: number
  transfersApplied: number
  transfersSkipped: number
  minted: string
  paid: string
  transferred: string
  fees: string
  /** keys holding a balance */
  accounts: number
  /** invariant checks run (one per block position) */
  checks: number
  /** Receipt blocks not judged: payload-missing, malformed, root */
  problems: Array<{ block: string, reason: string, error?: string }>
  violations: Array<{ invariant: string, block?: string, message: string }>
}

/** Result of `rewards.verify`: `ok` is false when any model's ledger breaks an invariant (the CLI exits 1). */
export interface RewardsVerifyResult {
  ok: boolean
  models: LedgerSummaryJson[]
}

/** The ledger part of `status`: this node's balance per model and its receipts not yet in a block. */
export interface LedgerStatusJson {
  key: string
  balances: Array<{ model: string, balance: string }>
  /** receipts this node co-signed as a stage and has not published in a Receipt block yet */
  pendingReceipts: number
  /** why the balances could not be folded (code: message) */
  error?: string
}
