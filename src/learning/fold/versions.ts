/**
 * The proposal fold (protocols/versions.md): each proposal's status and the
 * version history, from the proposals, their judged attestations and the
 * governance history.
 *
 * A proposal is judged in the governance state it names (its validator set
 * and params); a state not in the history, or older than the state its base
 * version was accepted in, rejects it (`stale-governance`). It reaches
 * quorum when its counted accepts number at least that state's quorum.
 * From V0 = sha256("bly/version/v1" || modelId): among the proposals on the
 * live version V that reach quorum, the smallest id is accepted, V' =
 * sha256(domain || V || proposalId), and the others on V are rejected
 * (`superseded`); repeat from V'. Afterwards, a proposal that reached quorum
 * but was not accepted had a base that was never live when it did
 * (`stale`); one whose counted rejects exceed n - quorum can no longer
 * reach quorum and is rejected with the most common reason of its rejects
 * (ties: the smallest code); any other is pending.
 */
import { fromHex } from '../../protocols/hex.ts'
import { judgeAttestations } from './attestations.ts'
import { nextVersionId, initialVersionId } from './ids.ts'
import type { WindowsLookup, Judgement } from './attestations.ts'
import type { GovernanceFold, GovernanceNode } from './governance.ts'
import type { Hex, ModelRecords, ProposalExplain, ProposalRecord, VersionInfo } from './types.ts'

/** The most common reason (ties: the smallest code string). */
export function commonReason (reasons: readonly string[]): string {
  const counts = new Map<string, number>()
  for (const r of reasons) {
    counts.set(r, (counts.get(r) ?? 0) + 1)
  }
  let best = ''
  let bestCount = 0
  for (const [reason, count] of [...counts].sort((a, b) => a[0] < b[0] ? -1 : 1)) {
    if (count > bestCount) {
      best = reason
      bestCount = count
    }
  }
  return best
}

/** The median of the gains in ppm, as a relative gain (display); null for none. */
export function medianGain (gainsPpm: readonly bigint[]): number | null {
  if (gainsPpm.length === 0) {
    return null
  }
  const sorted = [...gainsPpm].sort((a, b) => Number(a - b > 0n) - Number(a - b < 0n))
  const mid = Math.floor(sorted.length / 2)
  const ppm = sorted.length % 2 === 1 ? Number(sorted[mid]) : (Number(sorted[mid - 1]) + Number(sorted[mid])) / 2
  return ppm / 1e6
}

interface Judged {
  proposal: ProposalRecord
  gov?: GovernanceNode
  judgement: Judgement
  n: number | null
  quorum: number | null
  reaches: boolean
  decided?: { status: ProposalExplain['status'], reason: string, version?: Hex }
}

export interface ProposalFold {
  /** by id ascending */
  proposals: ProposalExplain[]
  /** V0 first, the live version last */
  versions: VersionInfo[]
}

/** Each proposal with its attestations judged in the governance state it names (by id ascending). */
async function judgeAll (records: Pick<ModelRecords, 'proposals' | 'attestations'>, governance: GovernanceFold, windowsOf: WindowsLookup): Promise<Judged[]> {
  const attestationsOf = new Map<Hex, ModelRecords['attestations']>()
  for (const a of records.attestations) {
    const list = attestationsOf.get(a.proposal) ?? []
    list.push(a)
    attestationsOf.set(a.proposal, list)
  }
  const judged: Judged[] = []
  for (const proposal of records.proposals) {
    const gov = governance.byId.get(proposal.governance)
    const judgement = await judgeAttestations(proposal, attestationsOf.get(proposal.idHex) ?? [], gov, windowsOf)
    const quorum = gov?.state.quorum ?? null
    const entry: Judged = { proposal, gov, judgement, n: gov != null ? gov.validators.size : null, quorum, reaches: quorum != null && judgement.accepts >= quorum }
    if (gov == null) {
      entry.decided = { status: 'rejected', reason: 'stale-governance' }
    } else if (gov.params == null) {
      entry.decided = { status: 'pending', reason: 'no-params' }
    }
    judged.push(entry)
  }
  return judged
}

/** The version after `live` once `won` is accepted. */
function nextVersion (live: VersionInfo, won: ProposalRecord): VersionInfo {
  const added = won.deltas.map(d => ({ proposal: won.idHex, delta: d.id, unit: d.unit }))
  const units = new Map(live.units.map(u => [u.unit, [...u.deltas]]))
  for (const d of added) {
    units.set(d.unit, [...(units.get(d.unit) ?? []), d.delta])
  }
  return {
    id: Buffer.from(nextVersionId(fromHex(live.id), won.id)).toString('hex'),
    index: live.index + 1,
    proposal: won.idHex,
    governance: won.governance,
    acceptedDeltas: [...live.acceptedDeltas, ...added],
    units: [...units].sort((a, b) => a[0] - b[0]).map(([unit, deltas]) => ({ unit, deltas }))
  }
}

/** Walks the versions from V0, deciding the proposals on each live version; returns the history. */
function walkVersions (model: Uint8Array, judged: Judged[]): VersionInfo[] {
  const onBase = new Map<Hex, Judged[]>()
  for (const j of judged) {
    const list = onBase.get(j.proposal.base) ?? []
    list.push(j)
    onBase.set(j.proposal.base, list)
  }
  let live: VersionInfo = { id: Buffer.from(initialVersionId(model)).toString('hex'), index: 0, proposal: null, governance: null, acceptedDeltas: [], units: [] }
  let liveGovIndex = 0
  const versions = [live]
  while (true) {
    const here = (onBase.get(live.id) ?? []).filter(j => j.decided == null)
    for (const j of here) {
      if ((j.gov?.state.index ?? 0) < liveGovIndex) {
        j.decided = { status: 'rejected', reason: 'stale-governance' }
      }
    }
    // judged is by id ascending, so the first to reach quorum has the smallest id
    const winners = here.filter(j => j.decided == null && j.reaches)
    if (winners.length === 0) {
      return versions
    }
    const [won, ...others] = winners
    live = nextVersion(live, won.proposal)
    won.decided = { status: 'accepted', reason: 'ok', version: live.id }
    for (const other of others) {
      other.decided = { status: 'rejected', reason: 'superseded' }
    }
    liveGovIndex = won.gov?.state.index ?? liveGovIndex
    versions.push(live)
  }
}

/** A judged proposal's status (what the walk left undecided: stale, rejected by votes, or pending) and explanation. */
function explain (j: Judged): ProposalExplain {
  let decided = j.decided
  if (decided == null) {
    if (j.reaches) {
      decided = { status: 'rejected', reason: 'stale' }
    } else if (j.n != null && j.quorum != null && j.judgement.rejects > j.n - j.quorum) {
      decided = { status: 'rejected', reason: commonReason(j.judgement.rejectReasons) }
    } else {
      decided = { status: 'pending', reason: 'quorum' }
    }
  }
  const p = j.proposal
  return {
    id: p.idHex,
    author: p.authorHex,
    base: p.base,
    governance: p.governance,
    dataset: p.datasetHex,
    deltas: p.deltas,
    claimedBase: p.claimedBase.toString(),
    claimedAfter: p.claimedAfter.toString(),
    status: decided.status,
    reason: decided.reason,
    ...(decided.version != null ? { version: decided.version } : {}),
    validators: j.n,
    quorum: j.quorum,
    accepts: j.judgement.accepts,
    rejects: j.judgement.rejects,
    gain: medianGain(j.judgement.acceptGainsPpm),
    attestations: j.judgement.attestations
  }
}

/** Every proposal's status and the version history of a model. */
export async function foldProposals (records: Pick<ModelRecords, 'model' | 'proposals' | 'attestations'>, governance: GovernanceFold, windowsOf: WindowsLookup): Promise<ProposalFold> {
  const judged = await judgeAll(records, governance, windowsOf)
  const versions = walkVersions(records.model, judged)
  return { proposals: judged.map(explain), versions }
}
