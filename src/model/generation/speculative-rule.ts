/**
 * The distribution and accept/reject rule of speculative decoding
 * (Leviathan et al. 2023, Chen et al. 2023). A draft token d drawn from the
 * draft's distribution q is kept with probability min(1, p(d) / q(d)), p
 * being the target's distribution; on rejection the replacement is drawn
 * from norm(max(0, p - q)). The kept tokens are then distributed exactly as
 * p. With temperature 0 both distributions are one-hot at the argmax, so the
 * rule reduces to "keep while the draft's token is the target's argmax".
 */
import { argmax } from '../sampling.ts'
import type { Prng } from '../prng.ts'
import type { SamplingOptions } from '../sampling.ts'

/**
 * The probabilities the Sampler would draw from for `logits` ([vocab]):
 * repetition penalty over `history`, then temperature, topK and topP, in
 * float64. With temperature 0: one-hot at the (penalised) argmax.
 */
export function samplingDistribution (logits: Float32Array, options: Required<SamplingOptions>, history: ArrayLike<number> = []): Float64Array {
  const { temperature, topK, topP, repetitionPenalty } = options
  const x = Float64Array.from(logits)
  if (repetitionPenalty !== 1) {
    const seen = new Set<number>()
    for (let i = 0; i < history.length; i++) {
      const id = history[i]
      if (id >= 0 && id < x.length && !seen.has(id)) {
        seen.add(id)
        x[id] = x[id] > 0 ? x[id] / repetitionPenalty : x[id] * repetitionPenalty
      }
    }
  }
  const p = new Float64Array(x.length)
  if (temperature === 0) {
    p[argmax(x)] = 1
    return p
  }
  // candidates by logit, descending (ties: lower index first), as the Sampler orders them
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => (x[b] - x[a]) || (a - b))
  const keepK = topK > 0 && topK < x.length ? topK : x.length
  const max = x[order[0]]
  let sum = 0
  for (let i = 0; i < keepK; i++) {
    const e = Math.exp((x[order[i]] - max) / temperature)
    p[order[i]] = e
    sum += e
  }
  let keep = keepK
  if (topP < 1) {
    let cum = 0
    for (let i = 0; i < keepK; i++) {
      cum += p[order[i]] / sum
      if (cum >= topP) {
        keep = i + 1
        break
      }
    }
  }
  let total = 0
  for (let i = 0; i < keep; i++) {
    total += p[order[i]]
  }
  for (let i = keep; i < keepK; i++) {
    p[order[i]] = 0
  }
  for (let i = 0; i < keep; i++) {
    p[order[i]] /= total
  }
  return p
}

/** Draws an index from `probs` (non-negative, summing to `total`, default 1). */
export function drawFrom (probs: Float64Array, rng: Prng, total = 1): number {
  let r = rng.next() * total
  let last = -1
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] > 0) {
      last = i
      r -= probs[i]
      if (r < 0) {
        return i
      }
    }
  }
  return last >= 0 ? last : argmax(probs)
}

export interface Verdict {
  accepted: boolean
  /** on rejection: the token to emit instead (drawn from norm(max(0, p - q))) */
  replacement?: number
}

/**
 * The accept/reject rule for one draft token `token` drawn from `q`, the
 * target's distribution being `p`. Greedy (both one-hot) is the special case
 * p = q = one-hot: accepted iff the draft token is the target's argmax, and
 * the replacement is the target's argmax.
 */
export function verifyDraftToken (token: number, p: Float64Array, q: Float64Array, rng: Prng): Verdict {
  const pd = p[token]
  const qd = q[token]
  if (qd > 0 && (pd >= qd || rng.next() * qd < pd)) {
    return { accepted: true }
  }
  const residual = new Float64Array(p.length)
  let total = 0
  for (let i = 0; i < p.length; i++) {
    const r = p[i] - q[i]
    if (r > 0) {
      residual[i] = r
      total += r
    }
  }
  // p - q has positive mass whenever q(d) > p(d); guard rounding anyway
  return { accepted: false, replacement: total > 0 ? drawFrom(residual, rng, total) : drawFrom(p, rng) }
}
