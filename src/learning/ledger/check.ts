/**
 * An independent check of a ledger result (what `blyd rewards verify`
 * runs after folding again): it replays only the applied entries, in
 * order, from empty balances, and checks at every block position that the
 * sum of balances equals the total minted and no balance is negative; that
 * the balances it ends with are the result's; that no source is credited
 * twice (a receipt id, or an entry id); that every credited receipt had
 * both signatures verified; and that the totals add up. It shares no code
 * with the state machine that produced the result, so a bug there shows
 * here as a violation.
 */
import type { LedgerEntry, LedgerResult, LedgerViolation, Position } from './types.ts'

function samePosition (a: Position, b: Position): boolean {
  return a.depth === b.depth && a.block === b.block
}

/** Every violation of `result` (the fold's own reports first). */
export function checkLedger (result: LedgerResult): LedgerViolation[] {
  const violations: LedgerViolation[] = [...result.violations]
  const balances = new Map<string, bigint>()
  const sources = new Set<string>()
  let minted = 0n
  let paid = 0n
  let transferred = 0n
  let fees = 0n
  const atBoundary = (at: Position): void => {
    let sum = 0n
    for (const [key, value] of balances) {
      if (value < 0n) {
        violations.push({ invariant: 'negative', at, message: `${key} holds ${value} after block ${at.block}` })
      }
      sum += value
    }
    if (sum !== minted) {
      violations.push({ invariant: 'supply', at, message: `after block ${at.block} the balances sum to ${sum}, ${minted} minted` })
    }
  }
  const applied = result.entries.filter(e => e.applied)
  applied.forEach((e: LedgerEntry, i) => {
    const source = e.kind === 'receipt' ? `receipt:${e.receipt ?? e.id}` : e.id
    if (sources.has(source)) {
      violations.push({ invariant: 'double-credit', at: e.at, message: `${source} credited twice (entry ${e.id})` })
    }
    sources.add(source)
    if (e.amount < 0n) {
      violations.push({ invariant: 'negative', at: e.at, message: `entry ${e.id} moves a negative amount` })
    }
    if (e.kind === 'receipt' && (e.signatures?.client !== true || e.signatures?.stage !== true)) {
      violations.push({ invariant: 'unsigned-credit', at: e.at, message: `receipt entry ${e.id} credited without both signatures` })
    }
    if (e.from == null) {
      minted += e.amount
    } else {
      balances.set(e.from, (balances.get(e.from) ?? 0n) - e.amount)
      if (e.kind === 'receipt') {
        paid += e.amount
      } else if (e.kind === 'transfer') {
        transferred += e.amount
      } else {
        fees += e.amount
      }
    }
    balances.set(e.to, (balances.get(e.to) ?? 0n) + e.amount)
    const next = applied[i + 1]
    if (next == null || !samePosition(next.at, e.at)) {
      atBoundary(e.at)
    }
  })
  const keys = new Set([...balances.keys(), ...result.balances.keys()])
  for (const key of keys) {
    const mine = balances.get(key) ?? 0n
    const theirs = result.balances.get(key) ?? 0n
    if (mine !== theirs) {
      violations.push({ invariant: 'supply', message: `${key}: the entries give ${mine}, the fold ${theirs}` })
    }
  }
  for (const [what, mine, theirs] of [['minted', minted, result.minted], ['paid', paid, result.paid], ['transferred', transferred, result.transferred], ['fees', fees, result.fees]] as const) {
    if (mine !== theirs) {
      violations.push({ invariant: 'supply', message: `the entries give ${what} ${mine}, the fold ${theirs}` })
    }
  }
  return violations
}
