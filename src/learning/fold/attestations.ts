/**
 * Which attestations of a proposal count, and as what (protocols/attestation.md,
 * "Which attestations count"). An attestation counts when its author is in
 * the validator set of the proposal's governance state, it is its author's
 * only attestation of the proposal (two or more: all ignored, `equivocation`),
 * its seedSig verifies, its payload decodes, and its measurements are of the
 * proposal's dataset then the regression datasets (params order) on exactly
 * the windows its seedSig samples. A counted attestation with measurements
 * counts as what the rule says of its numbers when its header says accept
 * (a lying verdict does not count as accept); a reject counts as a reject
 * with its own reason (a validator may always refuse; with no measurements
 * it is a structural reject: stale, malformed, ...).
 */
import { Reason, Verdict } from '../../protocols/learning-blocks.ts'
import { rule, tStatistic } from '../pol/rule.ts'
import { sampleFor, verifySeed } from '../pol/seed.ts'
import { toHex } from './blocks.ts'
import type { GovernanceNode } from './governance.ts'
import type { AttestationExplain, AttestationRecord, Hex, IgnoredReason, ProposalRecord } from './types.ts'
import type { RuleResult } from '../pol/rule.ts'

/** Eval windows of a dataset, or why this node cannot read them (memoized per fold). */
export type WindowsLookup = (datasetId: Uint8Array) => Promise<ArrayLike<number> | Error>

/** The counted attestations of a proposal. */
export interface Judgement {
  /** by id ascending */
  attestations: AttestationExplain[]
  accepts: number
  rejects: number
  /** effective reasons of the counted rejects */
  rejectReasons: string[]
  /** gain_ppm of the counted accepts */
  acceptGainsPpm: bigint[]
}

function sameList (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

function numbers (r: RuleResult): Pick<AttestationExplain, 'gain' | 'gainPpm' | 'baseLoss' | 'candidateLoss' | 't' | 'windows'> {
  return {
    gain: r.gainPpm != null ? Number(r.gainPpm) / 1e6 : null,
    gainPpm: r.gainPpm != null ? r.gainPpm.toString() : null,
    baseLoss: r.m > 0 ? Number(r.baseSum) / r.m / 1e6 : null,
    candidateLoss: r.m > 0 ? Number(r.candSum) / r.m / 1e6 : null,
    t: tStatistic(r),
    windows: r.m
  }
}

/**
 * One attestation of `proposal`, judged in governance state `gov`, knowing
 * whether its author attested the proposal more than once. Pure but for the
 * window lookup.
 */
export async function evaluateAttestation (a: AttestationRecord, proposal: ProposalRecord, gov: GovernanceNode | undefined, equivocated: boolean, windowsOf: WindowsLookup): Promise<{ explain: AttestationExplain, result?: RuleResult }> {
  const explain: AttestationExplain = { id: a.idHex, validator: a.authorHex, verdict: a.verdict, reason: a.reason, counted: false }
  const ignore = (why: IgnoredReason): { explain: AttestationExplain } => ({ explain: { ...explain, ignored: why } })
  if (gov?.params == null) {
    return ignore('no-governance')
  }
  if (!gov.validators.has(a.authorHex)) {
    return ignore('not-validator')
  }
  if (equivocated) {
    return ignore('equivocation')
  }
  if (!verifySeed(a.author, proposal.id, a.seedSig)) {
    return ignore('bad-seed')
  }
  if (a.payloadMissing) {
    return ignore('payload-missing')
  }
  if (a.measurements == null) {
    return ignore('malformed')
  }
  const isAccept = a.verdict === Verdict.ACCEPT
  if (!isAccept && a.measurements.length === 0) {
    return { explain: { ...explain, counted: true, effectiveVerdict: 'reject', effectiveReason: a.reason } }
  }
  const expected = [proposal.datasetHex, ...gov.params.regressionDatasets.map(toHex)]
  const measured = a.measurements.map(d => toHex(d.datasetId))
  if (measured.length !== expected.length || measured.some((hex, i) => hex !== expected[i])) {
    return ignore('datasets')
  }
  for (const d of a.measurements) {
    const windows = await windowsOf(d.datasetId)
    if (windows instanceof Error) {
      return ignore('windows-unavailable')
    }
    if (!sameList(d.windows, sampleFor(a.seedSig, windows, gov.params.sampleWindows))) {
      return ignore('sample')
    }
  }
  const [main, ...regressions] = a.measurements
  const result = rule(main, regressions, gov.params)
  const shown = { ...explain, counted: true, ...numbers(result) }
  if (!isAccept) {
    return { explain: { ...shown, effectiveVerdict: 'reject', effectiveReason: a.reason }, result }
  }
  if (result.pass) {
    return { explain: { ...shown, effectiveVerdict: 'accept', effectiveReason: Reason.OK }, result }
  }
  return { explain: { ...shown, effectiveVerdict: 'reject', effectiveReason: result.reason, verdictMismatch: true }, result }
}

/** Every attestation of `proposal` (any order), judged in `gov`; the counts the status is decided on. */
export async function judgeAttestations (proposal: ProposalRecord, attestations: readonly AttestationRecord[], gov: GovernanceNode | undefined, windowsOf: WindowsLookup): Promise<Judgement> {
  const perAuthor = new Map<Hex, number>()
  for (const a of attestations) {
    perAuthor.set(a.authorHex, (perAuthor.get(a.authorHex) ?? 0) + 1)
  }
  const sorted = [...attestations].sort((x, y) => x.idHex < y.idHex ? -1 : 1)
  const out: Judgement = { attestations: [], accepts: 0, rejects: 0, rejectReasons: [], acceptGainsPpm: [] }
  for (const a of sorted) {
    const { explain, result } = await evaluateAttestation(a, proposal, gov, (perAuthor.get(a.authorHex) ?? 0) > 1, windowsOf)
    out.attestations.push(explain)
    if (explain.effectiveVerdict === 'accept') {
      out.accepts++
      out.acceptGainsPpm.push(result?.gainPpm ?? 0n)
    } else if (explain.effectiveVerdict === 'reject') {
      out.rejects++
      out.rejectReasons.push(explain.effectiveReason ?? a.reason)
    }
  }
  return out
}
