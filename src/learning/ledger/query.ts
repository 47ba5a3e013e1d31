/**
 * Questions the CLI and the daemon ask of a ledger result (pure lookups;
 * no store access): a key's balance, its history with the running balance,
 * an entry by id or unique prefix, the position a new ledger block must
 * follow, and a sender's next transfer nonce.
 */
import { LedgerError, LedgerErrorCode } from './errors.ts'
import type { LedgerFold } from './fold.ts'
import type { Hex, LedgerEntry, LedgerResult, Position } from './types.ts'
import type { ReceiptBody } from '../../protocols/receipt.ts'

export function balanceOf (result: LedgerResult, key: Hex): bigint {
  return result.balances.get(key.toLowerCase()) ?? 0n
}

export interface HistoryItem {
  entry: LedgerEntry
  /** what the entry did to this key's balance (0 when skipped) */
  change: bigint
  /** this key's balance after the entry */
  balance: bigint
}

/** Every entry naming `key` as payer or payee, fold order, with the running balance. */
export function historyOf (result: LedgerResult, key: Hex): HistoryItem[] {
  const k = key.toLowerCase()
  let balance = 0n
  const out: HistoryItem[] = []
  for (const entry of result.entries) {
    if (entry.from !== k && entry.to !== k) {
      continue
    }
    let change = 0n
    if (entry.applied) {
      change = (entry.to === k ? entry.amount : 0n) - (entry.from === k ? entry.amount : 0n)
    }
    balance += change
    out.push({ entry, change, balance })
  }
  return out
}

/**
 * The entry whose id is `id` or starts with it (at least the kind, ':' and
 * 8 hex characters). LedgerError ENTRY_NOT_FOUND or AMBIGUOUS.
 */
export function findEntry (result: LedgerResult, id: string): LedgerEntry {
  const want = id.trim().toLowerCase()
  const exact = result.entries.find(e => e.id === want)
  if (exact != null) {
    return exact
  }
  if (!/^[a-z]+:[0-9a-f]{8,}/.test(want)) {
    throw new LedgerError(LedgerErrorCode.ENTRY_NOT_FOUND, `an entry id is <kind>:<hex> with at least 8 hex characters (got ${JSON.stringify(id)})`)
  }
  const matches = result.entries.filter(e => e.id.startsWith(want))
  if (matches.length > 1) {
    throw new LedgerError(LedgerErrorCode.AMBIGUOUS, `${matches.length} entries have ids starting with ${want}`)
  }
  if (matches.length === 0) {
    throw new LedgerError(LedgerErrorCode.ENTRY_NOT_FOUND, `no entry of model ${result.model} has an id starting with ${want}`)
  }
  return matches[0]
}

/** The last position the fold applied (a new ledger block lists its block as a parent), or null. */
export function ledgerHead (result: LedgerResult): Position | null {
  let head: Position | null = null
  for (const e of result.entries) {
    if (head == null || e.at.depth > head.depth || (e.at.depth === head.depth && e.at.block > head.block)) {
      head = e.at
    }
  }
  for (const p of result.problems) {
    if (head == null || p.at.depth > head.depth || (p.at.depth === head.depth && p.at.block > head.block)) {
      head = p.at
    }
  }
  return head
}

/** 1 + the largest nonce of `sender`'s transfers (applied or not), 1 for a first transfer. */
export function nextTransferNonce (result: LedgerResult, sender: Hex): bigint {
  let max = 0n
  for (const e of result.entries) {
    if (e.kind === 'transfer' && e.from === sender && e.nonce != null && e.nonce > max) {
      max = e.nonce
    }
  }
  return max + 1n
}

/** Skips that do not spend a receipt's nonce (protocols/ledger.md): a forgery or a misfiled receipt burns nothing. */
const UNSPENT: ReadonlySet<string> = new Set(['model', 'not-stage', 'client-signature', 'stage-signature'])

/** True when the fold judged a receipt of (client, stage, nonce): a stage never co-signs that nonce again. */
export function receiptNonceSpent (result: LedgerResult, client: Hex, stage: Hex, nonce: bigint): boolean {
  return result.entries.some(e => e.kind === 'receipt' && e.from === client && e.to === stage && e.nonce === nonce && !UNSPENT.has(e.reason ?? ''))
}

/**
 * Why a stage of this node would refuse a receipt's terms (its version is
 * none of the model's versions, its governance state none of the model's
 * states with params: the fold would skip it), or null.
 */
export function receiptTermsRefusal (fold: LedgerFold, r: Pick<ReceiptBody, 'version' | 'governance'>): string | null {
  const version = Buffer.from(r.version).toString('hex')
  if (!fold.learning.versions.some(v => v.id === version)) {
    return `version ${version} is not one of the model's versions`
  }
  const governance = Buffer.from(r.governance).toString('hex')
  if (fold.learning.governance.history.find(g => g.id === governance)?.params == null) {
    return `governance state ${governance} is not one of the model's states with params`
  }
  return null
}
