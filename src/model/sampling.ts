import { ModelError, ModelErrorCode } from './errors.ts'
import { Prng } from './prng.ts'

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 0. */
  temperature?: number
  /** keep the k most likely tokens; 0 = off. Default 0. */
  topK?: number
  /** keep the smallest set whose probability reaches p; 1 = off. Default 1. */
  topP?: number
  /** Hugging Face style: logits of seen tokens divided (if > 0) or multiplied (if < 0) by it; 1 = off. */
  repetitionPenalty?: number
  /** PRNG seed; the same seed, logits and options give the same tokens. Default 0. */
  seed?: number
}

export const DEFAULT_SAMPLING: Required<SamplingOptions> = {
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  seed: 0
}

export function validateSampling (options: SamplingOptions): Required<SamplingOptions> {
  const o = { ...DEFAULT_SAMPLING, ...options }
  const bad = (msg: string): never => { throw new ModelError(ModelErrorCode.BAD_OPTIONS, msg) }
  if (!Number.isFinite(o.temperature) || o.temperature < 0) { bad(`temperature must be >= 0, got ${o.temperature}`) }
  if (!Number.isSafeInteger(o.topK) || o.topK < 0) { bad(`topK must be an integer >= 0, got ${o.topK}`) }
  if (!Number.isFinite(o.topP) || o.topP <= 0 || o.topP > 1) { bad(`topP must be in (0, 1], got ${o.topP}`) }
  if (!Number.isFinite(o.repetitionPenalty) || o.repetitionPenalty <= 0) { bad(`repetitionPenalty must be > 0, got ${o.repetitionPenalty}`) }
  if (!Number.isSafeInteger(o.seed)) { bad(`seed must be an integer, got ${o.seed}`) }
  return o
}

/** Index of the largest value (first one on ties). */
export function argmax (values: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < values.length; i++) {
    if (values[i] > values[best]) {
      best = i
    }
  }
  return best
}

/** Picks next tokens from logits; holds its own PRNG, so one sampler per generation. */
export class Sampler {
  readonly options: Required<SamplingOptions>
  private readonly rng: Prng

  constructor (options: SamplingOptions = {}) {
    this.options = validateSampling(options)
    this.rng = new Prng(this.options.seed)
  }

  /** Chooses a token from `logits` ([vocab]); `history` holds the ids the penalty applies to. */
  sample (logits: Float32Array, history: ArrayLike<number> = []): number {
    const { temperature, topK, topP, repetitionPenalty } = this.options
    let x = logits
    if (repetitionPenalty !== 1 && history.length > 0) {
      x = Float32Array.from(logits)
      const seen = new Set<number>()
      for (let i = 0; i < history.length; i++) {
        const id = history[i]
        if (id >= 0 && id < x.length && !seen.has(id)) {
          seen.add(id)
          x[id] = x[id] > 0 ? x[id] / repetitionPenalty : x[id] * repetitionPenalty
        }
      }
    }
    if (temperature === 0) {
      return argmax(x)
    }
    const candidates = topK > 0 && topK < x.length ? topKIndices(x, topK) : sortedIndices(x)
    // softmax over candidates in float64, candidates sorted by logit, descending
    const max = x[candidates[0]]
    const probs = new Float64Array(candidates.length)
    let sum = 0
    for (let i = 0; i < candidates.length; i++) {
      const p = Math.exp((x[candidates[i]] - max) / temperature)
      probs[i] = p
      sum += p
    }
    let keep = candidates.length
    if (topP < 1) {
      let cum = 0
      for (let i = 0; i < candidates.length; i++) {
        cum += probs[i] / sum
        if (cum >= topP) {
          keep = i + 1
          break
        }
      }
    }
    let total = 0
    for (let i = 0; i < keep; i++) {
      total += probs[i]
    }
    let r = this.rng.next() * total
    for (let i = 0; i < keep; i++) {
      r -= probs[i]
      if (r < 0) {
        return candidates[i]
      }
    }
    return candidates[keep - 1]
  }
}

function sortedIndices (x: Float32Array): Uint32Array {
  const idx = new Uint32Array(x.length)
  for (let i = 0; i < idx.length; i++) {
    idx[i] = i
  }
  return idx.sort((a, b) => (x[b] - x[a]) || (a - b))
}

/** The k largest entries' indices, descending (ties: lower index first), via a size-k min-heap. */
function topKIndices (x: Float32Array, k: number): Uint32Array {
  const heap = new Uint32Array(k)
  let n = 0
  const less = (a: number, b: number): boolean => x[a] < x[b] || (x[a] === x[b] && a > b)
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && less(heap[l], heap[m])) { m = l }
      if (r < n && less(heap[r], heap[m])) { m = r }
      if (m === i) { return }
      const t = heap[i]; heap[i] = heap[m]; heap[m] = t
      i = m
    }
  }
  for (let i = 0; i < x.length; i++) {
    if (n < k) {
      heap[n] = i
      let c = n++
      while (c > 0) {
        const p = (c - 1) >> 1
        if (!less(heap[c], heap[p])) { break }
        const t = heap[c]; heap[c] = heap[p]; heap[p] = t
        c = p
      }
    } else if (less(heap[0], i)) {
      heap[0] = i
      down(0)
    }
  }
  return heap.sort((a, b) => (x[b] - x[a]) || (a - b))
}
