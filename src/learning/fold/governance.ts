/**
 * The governance fold (protocols/motion.md): the validator set and params
 * of a model over time, as a pure function of its Motion and Vote blocks.
 *
 * G0 = sha256("bly/governance/v1" || modelId) holds {the manifest's author}
 * and the genesis params. At state G, a motion with base G counts when its
 * author is in set(G), its payload decodes and it applies (add: a key not in
 * the set; remove: a key in the set, never the last; params.set: the result
 * passes resolveParams). Its signers are its author and its voters; it
 * reaches quorum when the signers in set(G) number at least
 * ceil(|set(G)| x quorumNum / quorumDen). Among the motions on G that reach
 * quorum, the smallest id applies: G' = sha256(domain || G || motionId); the
 * others on G are void (`superseded` when they had reached quorum, `stale`
 * otherwise). Repeat from G' until no motion on the current state reaches
 * quorum. The arrival order of blocks plays no part.
 */
import { MotionKind } from '../../protocols/learning-blocks.ts'
import { resolveParams } from '../../protocols/params.ts'
import { quorum } from '../pol/rule.ts'
import { toHex } from './blocks.ts'
import { initialGovernanceId, nextGovernanceId } from './ids.ts'
import type { GenesisState, GovernanceState, Hex, ModelRecords, MotionExplain, MotionRecord, ParamsJson } from './types.ts'
import type { Params } from '../../protocols/params.ts'

/** One governance state with its set and params as values. */
export interface GovernanceNode {
  state: GovernanceState
  validators: Set<Hex>
  params: Params | null
}

export interface GovernanceFold {
  /** G0 first, the current state last */
  history: GovernanceNode[]
  /** every state of the history by id */
  byId: Map<Hex, GovernanceNode>
  /** by id ascending */
  motions: MotionExplain[]
}

export function paramsJson (params: Params): ParamsJson {
  return { ...params, regressionDatasets: params.regressionDatasets.map(toHex) }
}

function node (id: Uint8Array, index: number, motion: Hex | null, validators: Set<Hex>, params: Params | null): GovernanceNode {
  return {
    state: {
      id: toHex(id),
      index,
      motion,
      validators: [...validators].sort(),
      params: params != null ? paramsJson(params) : null,
      quorum: params != null ? quorum(validators.size, params) : null
    },
    validators,
    params
  }
}

/** The params a params.set motion asks for, in JSON form. */
function motionParams (m: MotionRecord): Partial<ParamsJson> | undefined {
  if (m.body?.kind !== MotionKind.SET_PARAMS) {
    return undefined
  }
  const { regressionDatasets, ...rest } = m.body.params
  return { ...rest, ...(regressionDatasets != null ? { regressionDatasets: regressionDatasets.map(toHex) } : {}) }
}

interface Evaluation {
  explain: MotionExplain
  /** reaches quorum and applies */
  winner: boolean
  next?: { validators: Set<Hex>, params: Params }
}

/** What motion `m` would do at state `at` (not yet knowing the other motions on that state). */
function evaluate (m: MotionRecord, signers: Hex[], at: GovernanceNode): Evaluation {
  const set = at.validators
  const counted = signers.map(key => ({ key, counted: set.has(key) }))
  const count = counted.filter(s => s.counted).length
  const explain: MotionExplain = {
    id: m.idHex,
    author: m.authorHex,
    kind: m.kind,
    base: m.base,
    status: 'void',
    reason: '',
    ...(m.body != null && m.body.kind !== MotionKind.SET_PARAMS ? { key: toHex(m.body.key) } : {}),
    ...(motionParams(m) != null ? { params: motionParams(m) } : {}),
    signers: counted,
    count,
    quorum: at.state.quorum
  }
  const done = (status: MotionExplain['status'], reason: string): Evaluation => ({ explain: { ...explain, status, reason }, winner: false })
  if (at.params == null) {
    return done('pending', 'no-params')
  }
  if (!set.has(m.authorHex)) {
    return done('void', 'not-member')
  }
  if (m.payloadMissing) {
    return done('pending', 'payload-missing')
  }
  if (m.body == null) {
    return done('void', 'malformed')
  }
  let validators = set
  let params = at.params
  if (m.body.kind === MotionKind.SET_PARAMS) {
    try {
      params = resolveParams(at.params, m.body.params)
    } catch {
      return done('void', 'invalid-params')
    }
  } else {
    const key = toHex(m.body.key)
    if (m.body.kind === MotionKind.ADD_VALIDATOR) {
      if (set.has(key)) {
        return done('void', 'already-member')
      }
      validators = new Set([...set, key])
    } else {
      if (!set.has(key)) {
        return done('void', 'not-a-validator')
      }
      if (set.size === 1) {
        return done('void', 'last-validator')
      }
      validators = new Set([...set].filter(k => k !== key))
    }
  }
  if (count < quorum(set.size, at.params)) {
    return done('pending', 'quorum')
  }
  return { explain: { ...explain, status: 'pending', reason: 'quorum' }, winner: true, next: { validators, params } }
}

/** The governance history of a model and the status of each of its motions. */
export function foldGovernance (records: Pick<ModelRecords, 'model' | 'authorHex' | 'motions' | 'votes'>, genesis: GenesisState): GovernanceFold {
  const voters = new Map<Hex, Set<Hex>>()
  for (const v of records.votes) {
    const set = voters.get(v.motion) ?? new Set()
    set.add(v.authorHex)
    voters.set(v.motion, set)
  }
  const signersOf = (m: MotionRecord): Hex[] => [...new Set([m.authorHex, ...(voters.get(m.idHex) ?? [])])].sort()
  const onBase = new Map<Hex, MotionRecord[]>()
  for (const m of records.motions) {
    const list = onBase.get(m.base) ?? []
    list.push(m)
    onBase.set(m.base, list)
  }
  let current = node(initialGovernanceId(records.model), 0, null, new Set([records.authorHex]), genesis.status === 'ok' ? genesis.params : null)
  const history = [current]
  const explained = new Map<Hex, MotionExplain>()
  while (true) {
    const at = current
    const here = (onBase.get(at.state.id) ?? []).map(m => evaluate(m, signersOf(m), at))
    const winners = here.filter(e => e.winner)
    if (winners.length === 0) {
      for (const e of here) {
        explained.set(e.explain.id, e.explain)
      }
      break
    }
    // records are by id ascending, so the first winner has the smallest id
    const [won] = winners
    const id = nextGovernanceId(Uint8Array.from(Buffer.from(current.state.id, 'hex')), Uint8Array.from(Buffer.from(won.explain.id, 'hex')))
    const next = node(id, current.state.index + 1, won.explain.id, won.next?.validators ?? current.validators, won.next?.params ?? current.params)
    for (const e of here) {
      if (e === won) {
        explained.set(e.explain.id, { ...e.explain, status: 'applied', reason: 'ok', result: next.state.id })
      } else if (e.winner) {
        explained.set(e.explain.id, { ...e.explain, status: 'void', reason: 'superseded' })
      } else if (e.explain.status === 'pending') {
        explained.set(e.explain.id, { ...e.explain, status: 'void', reason: 'stale' })
      } else {
        explained.set(e.explain.id, e.explain)
      }
    }
    history.push(next)
    current = next
  }
  const motions = records.motions.map(m => explained.get(m.idHex) ?? {
    id: m.idHex,
    author: m.authorHex,
    kind: m.kind,
    base: m.base,
    status: 'void' as const,
    reason: 'unknown-base',
    ...(m.body != null && m.body.kind !== MotionKind.SET_PARAMS ? { key: toHex(m.body.key) } : {}),
    ...(motionParams(m) != null ? { params: motionParams(m) } : {}),
    signers: signersOf(m).map(key => ({ key, counted: false })),
    count: 0,
    quorum: null
  })
  return { history, byId: new Map(history.map(n => [n.state.id, n])), motions }
}
