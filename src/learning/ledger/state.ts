/**
 * The ledger's state machine: balances, the permanent spent sets and the
 * entries, changed only by the events of protocols/ledger.md ("Events"),
 * applied by the caller in fold order (fold.ts). Integers only (bigint).
 *
 * Every credit names its source (a receipt id, a transfer block, one mint
 * per role per proposal, the genesis block): a source credited twice is a
 * violation and the second credit does not happen. After each block
 * position the caller calls `endBlock`, which recomputes the sum of all
 * balances and compares it with the total minted, and looks for a negative
 * balance: the invariants hold at every block, not only at the end.
 */
import { MAX_LEDGER_SUPPLY } from '../../protocols/transfer.ts'
import type { BlockProblem, EntryKind, Hex, LedgerEntry, LedgerResult, LedgerViolation, Position, ProposalEvent, ReceiptBatchInput, ReceiptContext, ReceiptItem, SkipReason } from './types.ts'

/** Proposal rejections that cost the proposer nothing: lost races and stale governance (docs/ledger.md). */
const FREE_REJECTIONS: ReadonlySet<string> = new Set(['stale', 'superseded', 'stale-governance'])

const MAX_U64 = 0xffff_ffff_ffff_ffffn

export class LedgerState {
  readonly model: Hex
  readonly balances = new Map<Hex, bigint>()
  minted = 0n
  paid = 0n
  transferred = 0n
  fees = 0n
  checks = 0
  readonly entries: LedgerEntry[] = []
  readonly problems: BlockProblem[] = []
  readonly violations: LedgerViolation[] = []
  readonly counts = { blocks: 0, receiptsPaid: 0, receiptsSkipped: 0, transfersApplied: 0, transfersSkipped: 0 }
  /** receipt ids judged (paid or skipped): permanent, no TTL */
  private readonly spentReceipts = new Set<Hex>()
  /** `client:stage:nonce` of judged receipts, keys as account numbers (short strings: a million of them fit) */
  private readonly spentReceiptNonces = new Set<string>()
  /** `sender:nonce` of judged transfers */
  private readonly spentTransferNonces = new Set<string>()
  /** receipt ids credited so far */
  private readonly creditedReceipts = new Set<Hex>()
  /** every other source credited so far (entry ids) */
  private readonly credited = new Set<string>()
  /** a small number per key seen, for the nonce keys */
  private readonly accounts = new Map<Hex, number>()
  /** one `blocks` list per block position, shared by its entries */
  private readonly blockLists = new Map<Hex, Hex[]>()

  constructor (model: Hex) {
    this.model = model
  }

  balance (key: Hex): bigint {
    return this.balances.get(key) ?? 0n
  }

  private record (entry: LedgerEntry): void {
    this.entries.push(entry)
  }

  private violation (v: LedgerViolation): void {
    this.violations.push(v)
  }

  private account (key: Hex): number {
    let n = this.accounts.get(key)
    if (n == null) {
      n = this.accounts.size
      this.accounts.set(key, n)
    }
    return n
  }

  private blocksOf (block: Hex): Hex[] {
    let list = this.blockLists.get(block)
    if (list == null) {
      list = [block]
      this.blockLists.set(block, list)
    }
    return list
  }

  /** credit `to` once per `source` (a receipt id for receipts, else the entry id) */
  private credit (to: Hex, amount: bigint, source: { receipt: Hex } | { entry: string }, at: Position): boolean {
    const seen = 'receipt' in source ? this.creditedReceipts : this.credited
    const key = 'receipt' in source ? source.receipt : source.entry
    if (seen.has(key)) {
      this.violation({ invariant: 'double-credit', at, message: `${'receipt' in source ? 'receipt ' : ''}${key} would credit twice` })
      return false
    }
    seen.add(key)
    this.balances.set(to, this.balance(to) + amount)
    return true
  }

  /** mint `amount` to `to`, unless the supply would pass a u64 (skipped: supply) */
  private mint (kind: EntryKind, id: string, to: Hex, amount: bigint, at: Position, blocks: Hex[], extra: Partial<LedgerEntry> = {}): void {
    const entry: LedgerEntry = { id, kind, applied: false, from: null, to, amount, at, blocks, ...extra }
    if (this.minted + amount > MAX_LEDGER_SUPPLY) {
      this.record({ ...entry, reason: 'supply' })
      return
    }
    if (this.credit(to, amount, { entry: id }, at)) {
      this.minted += amount
      this.record({ ...entry, applied: true })
    }
  }

  /** move `amount` from `from` to `to` when `from` holds it; returns whether it moved */
  private move (from: Hex, to: Hex, amount: bigint, source: { receipt: Hex } | { entry: string }, at: Position): boolean {
    const have = this.balance(from)
    if (have < amount) {
      return false
    }
    if (!this.credit(to, amount, source, at)) {
      return false
    }
    this.balances.set(from, this.balance(from) - amount)
    return true
  }

  /** The genesis allocation to the manifest's author. */
  genesis (block: Hex, at: Position, author: Hex, amount: bigint): void {
    this.mint('genesis', `genesis:${block}`, author, amount, at, [block])
  }

  /**
   * A Receipt block by `stage`: each receipt judged in batch order. A batch
   * that cannot be judged is a problem of the block (payload-missing waits;
   * nothing of it is spent).
   */
  receipts (block: Hex, at: Position, stage: Hex, batch: ReceiptBatchInput, ctx: ReceiptContext): void {
    this.counts.blocks++
    if (batch.status !== 'ok') {
      this.problems.push({ block, at, reason: batch.status, ...(batch.error != null ? { error: batch.error } : {}) })
      return
    }
    for (const r of batch.receipts) {
      this.receipt(block, at, stage, r, ctx)
    }
  }

  private receipt (block: Hex, at: Position, author: Hex, r: ReceiptItem, ctx: ReceiptContext): void {
    const entry: LedgerEntry = {
      id: `receipt:${r.id}:${block}`,
      kind: 'receipt',
      applied: false,
      from: r.client,
      to: r.stage,
      amount: 0n,
      at,
      blocks: this.blocksOf(block),
      receipt: r.id,
      nonce: r.nonce,
      signatures: r.signatures
    }
    const skip = (reason: SkipReason): void => {
      this.counts.receiptsSkipped++
      this.record({ ...entry, reason })
    }
    // not spent: a forgery or a misfiled receipt cannot burn a real receipt's id or nonce
    if (r.model !== ctx.model) {
      skip('model')
      return
    }
    if (r.stage !== author) {
      skip('not-stage')
      return
    }
    if (!r.signatures.client) {
      skip('client-signature')
      return
    }
    if (!r.signatures.stage) {
      skip('stage-signature')
      return
    }
    if (this.spentReceipts.has(r.id)) {
      skip('replay')
      return
    }
    const nonceKey = `${this.account(r.client)}:${this.account(r.stage)}:${r.nonce}`
    if (this.spentReceiptNonces.has(nonceKey)) {
      skip('nonce-spent')
      return
    }
    // judged from here: spent whatever the outcome
    this.spentReceipts.add(r.id)
    this.spentReceiptNonces.add(nonceKey)
    if (r.client === r.stage) {
      skip('self')
      return
    }
    if (!ctx.versions.has(r.version)) {
      skip('unknown-version')
      return
    }
    const price = ctx.prices.get(r.governance)
    if (price == null) {
      skip('unknown-governance')
      return
    }
    if (r.layerEnd <= r.layerStart || (ctx.decoderLayers != null && r.layerEnd > ctx.decoderLayers)) {
      skip('range')
      return
    }
    if (r.positions < 1 || r.tokens > r.positions) {
      skip('positions')
      return
    }
    const amount = BigInt(r.positions) * BigInt(r.layerEnd - r.layerStart) * price
    if (amount > MAX_U64) {
      skip('overflow')
      return
    }
    entry.amount = amount
    if (!this.move(r.client, r.stage, amount, { receipt: r.id }, at)) {
      skip('client-balance')
      return
    }
    this.paid += amount
    this.counts.receiptsPaid++
    this.record({ ...entry, applied: true })
  }

  /** A Transfer block: its author pays `to` unless the nonce is spent or the balance short. */
  transfer (block: Hex, at: Position, from: Hex, to: Hex, amount: bigint, nonce: bigint): void {
    this.counts.blocks++
    const entry: LedgerEntry = { id: `transfer:${block}`, kind: 'transfer', applied: false, from, to, amount, at, blocks: [block], nonce }
    const nonceKey = `${this.account(from)}:${nonce}`
    if (this.spentTransferNonces.has(nonceKey)) {
      this.counts.transfersSkipped++
      this.record({ ...entry, reason: 'nonce-spent' })
      return
    }
    this.spentTransferNonces.add(nonceKey)
    if (!this.move(from, to, amount, { entry: entry.id }, at)) {
      this.counts.transfersSkipped++
      this.record({ ...entry, reason: 'balance' })
      return
    }
    this.transferred += amount
    this.counts.transfersApplied++
    this.record({ ...entry, applied: true })
  }

  /** An accepted proposal mints; one rejected by its validators' verdicts pays them (docs/ledger.md). */
  proposal (at: Position, p: ProposalEvent): void {
    if (p.status === 'accepted') {
      this.mint('proposal', `proposal:${p.proposal}`, p.proposer, p.gainMicroNats * p.rewardPerMicroNat, at, p.blocks, { gainMicroNats: p.gainMicroNats })
      for (const v of p.accepters) {
        this.mint('validator', `validator:${p.proposal}:${v.key}`, v.key, p.validatorReward, at, [p.proposal, v.attestation])
      }
      return
    }
    if (FREE_REJECTIONS.has(p.reason)) {
      return
    }
    for (const v of p.rejecters) {
      const id = `fee:${p.proposal}:${v.key}`
      const entry: LedgerEntry = { id, kind: 'fee', applied: false, from: p.proposer, to: v.key, amount: p.validatorReward, at, blocks: [p.proposal, v.attestation] }
      if (v.key === p.proposer) {
        // a proposer rejecting its own proposal pays itself: nothing moves
        this.record({ ...entry, applied: true, amount: 0n })
        continue
      }
      if (!this.move(p.proposer, v.key, p.validatorReward, { entry: id }, at)) {
        this.record({ ...entry, reason: 'proposer-balance' })
        continue
      }
      this.fees += p.validatorReward
      this.record({ ...entry, applied: true })
    }
  }

  /** The invariants after a block position: sum of balances == minted, none negative. */
  endBlock (at: Position): void {
    this.checks++
    let sum = 0n
    for (const [key, value] of this.balances) {
      if (value < 0n) {
        this.violation({ invariant: 'negative', at, message: `${key} holds ${value}` })
      }
      sum += value
    }
    if (sum !== this.minted) {
      this.violation({ invariant: 'supply', at, message: `balances sum to ${sum}, ${this.minted} minted` })
    }
  }

  result (): LedgerResult {
    return {
      model: this.model,
      balances: this.balances,
      minted: this.minted,
      paid: this.paid,
      transferred: this.transferred,
      fees: this.fees,
      entries: this.entries,
      problems: this.problems,
      counts: this.counts,
      checks: this.checks,
      violations: this.violations
    }
  }
}
