/**
 * Questions the CLI, the validator service and the loader ask of a fold
 * result (pure lookups; no store access).
 */
import type { Hex, ModelFold, MotionExplain, ProposalExplain, VersionInfo } from './types.ts'

/** The proposal whose id is `idOrPrefix` (at least 8 hex characters), or undefined; throws RangeError when a prefix matches several. */
export function findProposal (fold: ModelFold, idOrPrefix: string): ProposalExplain | undefined {
  const hex = idOrPrefix.toLowerCase()
  if (!/^[0-9a-f]{8,64}$/.test(hex)) {
    return undefined
  }
  const matches = fold.proposals.filter(p => p.id.startsWith(hex))
  if (matches.length > 1) {
    throw new RangeError(`${matches.length} proposals have ids starting with ${hex}`)
  }
  return matches[0]
}

/** The version `id` of the model's history (any, not only the live one), or undefined. */
export function findVersion (fold: ModelFold, id: Hex): VersionInfo | undefined {
  return fold.versions.find(v => v.id === id.toLowerCase())
}

/** Motions on the current governance state still waiting for signatures. */
export function pendingMotions (fold: ModelFold): MotionExplain[] {
  const current = fold.governance.current.id
  return fold.governance.motions.filter(m => m.status === 'pending' && m.base === current)
}

/**
 * The pending motion on the current state asking for the same change
 * (`validators.add`/`validators.remove` of `key`), if any: `blyd validators
 * --add/--remove` votes for it instead of publishing another motion (two
 * motions on one state split the signatures; only one can apply).
 */
export function samePendingMotion (fold: ModelFold, kind: string, key: Hex): MotionExplain | undefined {
  return pendingMotions(fold).find(m => m.kind === kind && m.key === key.toLowerCase())
}

/** True iff `key` is in the current validator set. */
export function isValidator (fold: ModelFold, key: Hex): boolean {
  return fold.governance.current.validators.includes(key.toLowerCase())
}

/**
 * Proposals a validator `key` should measure now: pending, on the live
 * version, in the current governance state, not yet attested by `key`.
 */
export function proposalsToAttest (fold: ModelFold, key: Hex): ProposalExplain[] {
  const k = key.toLowerCase()
  return fold.proposals.filter(p => p.status === 'pending' &&
    p.base === fold.live.id &&
    p.governance === fold.governance.current.id &&
    !p.attestations.some(a => a.validator === k))
}
