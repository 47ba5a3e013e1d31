/**
 * Speculative decoding: a cheap draft model proposes k tokens, the target
 * (typically a PipelineSession whose decoder layers run on remote stages)
 * checks all of them in ONE multi-position forward, and every agreeing
 * prefix token is kept. Both KV caches are then rolled back past the first
 * rejection. Greedy output is identical to plain greedy decoding of the
 * target; with sampling the standard accept/reject rule (speculative-rule.ts)
 * keeps the output distribution the target's own. k adapts to the
 * acceptance rate: +1 after a round where every draft token was kept, -1
 * after one where fewer than half were, within [minK, maxK].
 */
import { ModelError, ModelErrorCode } from '../errors.ts'
import { Prng } from '../prng.ts'
import { validateSampling } from '../sampling.ts'
import { FinishReason } from './generate.ts'
import { drawFrom, samplingDistribution, verifyDraftToken } from './speculative-rule.ts'
import type { FinishReasonValue } from './generate.ts'
import type { SpeculativeSession } from './token-model.ts'
import type { SamplingOptions } from '../sampling.ts'

export interface SpeculativeOptions {
  /** draft tokens per round to start with (default 4) */
  k?: number
  /** adapt k to the acceptance rate (default true) */
  adaptive?: boolean
  /** bounds of the adaptive k (default 1 .. 8) */
  minK?: number
  maxK?: number
  /** default 256 */
  maxNewTokens?: number
  /** generation ends when one of these is produced (it is not yielded) */
  eosTokenIds?: number[]
  /** the same options as generate(); the same seed gives the same tokens */
  sampling?: SamplingOptions
  signal?: AbortSignal
  /** told after every round */
  onRound?(round: SpeculativeRound): void
}

export interface SpeculativeRound {
  /** draft tokens proposed this round */
  k: number
  /** of those, kept */
  accepted: number
  /** tokens this round added (accepted drafts + the target's own token) */
  produced: number
}

export interface SpeculativeStats {
  rounds: number
  proposed: number
  accepted: number
  /** accepted / proposed (0 when none proposed) */
  acceptanceRate: number
  /** forwards through the target */
  targetSteps: number
  /** k at the end */
  k: number
}

export interface SpeculativeToken {
  id: number
  /** 0-based index among the generated tokens */
  index: number
}

export interface SpeculativeResult {
  tokens: number[]
  finishReason: FinishReasonValue
  stats: SpeculativeStats
}

export const SPECULATIVE_DEFAULTS = {
  k: 4,
  minK: 1,
  maxK: 8,
  maxNewTokens: 256
} as const

function checkInt (name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

interface Limits {
  maxNewTokens: number
  minK: number
  maxK: number
  k: number
  adaptive: boolean
}

function limitsOf (options: SpeculativeOptions): Limits {
  const d = SPECULATIVE_DEFAULTS
  const maxNewTokens = checkInt('maxNewTokens', options.maxNewTokens ?? d.maxNewTokens, 0)
  const minK = checkInt('minK', options.minK ?? d.minK, 1)
  const maxK = checkInt('maxK', options.maxK ?? d.maxK, minK)
  const k = checkInt('k', options.k ?? d.k, 0)
  if (k > maxK) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `k ${k} is above maxK ${maxK}`)
  }
  return { maxNewTokens, minK, maxK, k, adaptive: options.adaptive ?? true }
}

/** What one round shares: the sampling options, the PRNG and the tokens so far. */
interface RoundState {
  sampling: Required<SamplingOptions>
  rng: Prng
  /** prompt + every token produced */
  context: number[]
  signal?: AbortSignal
}

/** The draft's `kr` proposals after `context` (its cache first rolled back to `base`), with the distribution each was drawn from. */
async function propose (draft: SpeculativeSession, st: RoundState, base: number, kr: number): Promise<{ drafts: number[], q: Float64Array[] }> {
  const drafts: number[] = []
  const q: Float64Array[] = []
  if (kr === 0) {
    return { drafts, q }
  }
  if (draft.length > base) {
    await draft.truncate(base)
  }
  let feed = st.context.slice(draft.length)
  for (let i = 0; i < kr; i++) {
    const { logits } = await draft.forward(feed, { signal: st.signal })
    const dist = samplingDistribution(logits, st.sampling, historyOf(st, drafts, i))
    const id = pick(dist, st)
    drafts.push(id)
    q.push(dist)
    feed = [id]
  }
  return { drafts, q }
}

/**
 * The accept/reject pass over the target's rows: `rowOf(i)` predicts
 * drafts[i], rowOf(kr) the token after them all. Resolves the tokens the
 * round produces and how many drafts were kept.
 */
function judge (rowOf: (i: number) => Float32Array, drafts: number[], q: Float64Array[], st: RoundState): { produced: number[], accepted: number } {
  const produced: number[] = []
  for (let i = 0; i < drafts.length; i++) {
    const p = samplingDistribution(rowOf(i), st.sampling, historyOf(st, drafts, i))
    const verdict = verifyDraftToken(drafts[i], p, q[i], st.rng)
    if (!verdict.accepted) {
      produced.push(verdict.replacement as number)
      return { produced, accepted: i }
    }
    produced.push(drafts[i])
  }
  produced.push(pick(samplingDistribution(rowOf(drafts.length), st.sampling, historyOf(st, drafts, drafts.length)), st))
  return { produced, accepted: drafts.length }
}

/** The ids the repetition penalty sees before drafts[i] (only built when the penalty is on). */
function historyOf (st: RoundState, drafts: number[], i: number): number[] {
  return st.sampling.repetitionPenalty === 1 ? [] : [...st.context, ...drafts.slice(0, i)]
}

function pick (dist: Float64Array, st: RoundState): number {
  return st.sampling.temperature === 0 ? dist.indexOf(1) : drawFrom(dist, st.rng)
}

/** +1 after a round that kept every draft, -1 after one that kept fewer than half. */
function adaptK (k: number, kr: number, accepted: number, limits: Limits): number {
  if (!limits.adaptive || kr === 0) {
    return k
  }
  if (accepted === kr) {
    return Math.min(limits.maxK, k + 1)
  }
  return accepted * 2 < kr ? Math.max(limits.minK, k - 1) : k
}

/**
 * Streams tokens for `prompt` from `target`, drafted by `draft`. Both
 * sessions must be fresh (no cached positions) and share the vocabulary.
 * At the end the target holds prompt + tokens minus the last token (which
 * was never fed), the draft at most that; the caller owns and closes both.
 */
export async function * speculativeGenerate (target: SpeculativeSession, draft: SpeculativeSession, prompt: number[], options: SpeculativeOptions = {}): AsyncGenerator<SpeculativeToken, SpeculativeResult, undefined> {
  const limits = limitsOf(options)
  const { maxNewTokens } = limits
  let k = limits.k
  if (prompt.length === 0) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'prompt has no tokens')
  }
  if (target.length !== 0 || draft.length !== 0) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `speculation needs fresh sessions (target has ${target.length} positions cached, draft ${draft.length})`)
  }
  const sampling = validateSampling(options.sampling ?? {})
  const st: RoundState = { sampling, rng: new Prng(sampling.seed), context: prompt.slice(), signal: options.signal }
  const eos = new Set(options.eosTokenIds ?? [])
  const tokens: number[] = []
  const stats: SpeculativeStats = { rounds: 0, proposed: 0, accepted: 0, acceptanceRate: 0, targetSteps: 0, k }
  let finishReason: FinishReasonValue = FinishReason.LENGTH
  let done = false
  while (!done && tokens.length < maxNewTokens) {
    if (options.signal?.aborted === true) {
      finishReason = FinishReason.ABORTED
      break
    }
    // a round yields at most kr + 1 tokens: never draft past maxNewTokens
    const kr = Math.min(k, maxNewTokens - tokens.length - 1)
    // the target has cached context[0, base); the rest is pending
    const base = target.length
    const pending = st.context.slice(base)
    const { drafts, q } = await propose(draft, st, base, kr)
    // verify pending + drafts in one target forward: the last kr + 1 rows predict drafts[0..kr-1] and the bonus token
    const out = await target.forward([...pending, ...drafts], { allRows: true, signal: options.signal })
    stats.targetSteps++
    const first = out.rows - kr - 1
    const { produced, accepted } = judge(i => out.logits.subarray((first + i) * out.vocab, (first + i + 1) * out.vocab), drafts, q, st)
    // the target keeps pending + the accepted drafts; the last produced token is the next pending one
    await target.truncate(base + pending.length + accepted)
    stats.rounds++
    stats.proposed += kr
    stats.accepted += accepted
    options.onRound?.({ k: kr, accepted, produced: produced.length })
    for (const id of produced) {
      if (eos.has(id)) {
        finishReason = FinishReason.EOS
        done = true
        break
      }
      tokens.push(id)
      st.context.push(id)
      yield { id, index: tokens.length - 1 }
      if (tokens.length >= maxNewTokens) {
        break
      }
    }
    k = adaptK(k, kr, accepted, limits)
  }
  // the draft must not hold positions the target rejected
  if (draft.length > target.length) {
    await draft.truncate(target.length)
  }
  stats.acceptanceRate = stats.proposed > 0 ? stats.accepted / stats.proposed : 0
  stats.k = k
  return { tokens, finishReason, stats }
}
