/**
 * A synthetic fine-tuning delta with the statistics reported for real
 * ones, for benches (seeded: the same bytes on every run).
 *
 * What it imitates, and the sources:
 * - low-rank dominated: full fine-tuning updates have a low "intrinsic
 * rank" (Hu et al. 2021, LoRA, section 7; Aghajanyan et al. 2020,
 * "Intrinsic dimensionality explains the effectiveness of language model
 * fine-tuning"), and their singular values are long-tailed: a few large,
 * many small (Ping et al. 2024, Delta-CoMe). Here: a rank-R part
 * sum_k s_k a_k b_k^T with Gaussian a_k, b_k and s_k proportional to
 * (k + 1)^-decay.
 * - plus a dense part with heavy tails and outlier input channels: the
 * delta entries of SFT models are mostly tiny with a few large ones
 * (Yu et al. 2024, DARE; Yadav et al. 2023, TIES/ComPEFT keep only the
 * top 5-20% by magnitude), and LLM activations have outlier feature
 * dimensions whose weights get larger updates (Dettmers et al. 2022,
 * LLM.int8()). Here: Student-t (nu = 3) entries times a log-normal scale
 * per input column.
 * - small: the delta's RMS is a fraction (relRms) of the weights' RMS.
 * A LoRA-merged delta is the special case lowRankShare = 1.
 * 1-D tensors (norm weights) get the dense heavy-tailed part only.
 */
import { Prng } from '../../src/model/prng.ts'

export interface RealisticDeltaOptions {
  /** delta RMS / weight RMS of the tensor */
  relRms: number
  /** share of the delta's energy in the low-rank part (default 0.7) */
  lowRankShare?: number
  /** rank of the low-rank part (default max(4, min(32, min(rows, cols) / 8))) */
  rank?: number
  /** singular value decay exponent (default 1) */
  decay?: number
  /** Student-t degrees of freedom of the dense part (default 3) */
  nu?: number
  /** std of the log of the per-column scale (default 0.5) */
  channelSigma?: number
}

export const REALISTIC_DELTA_DEFAULTS = { lowRankShare: 0.7, decay: 1, nu: 3, channelSigma: 0.5 } as const

export function defaultDeltaRank (rows: number, cols: number): number {
  return Math.max(4, Math.min(32, Math.floor(Math.min(rows, cols) / 8)))
}

/** Student-t(nu) with unit variance (nu > 2), by Bailey's polar method (1994) */
function studentT (rng: Prng, nu: number): number {
  let u: number
  let w: number
  do {
    u = 2 * rng.next() - 1
    const v = 2 * rng.next() - 1
    w = u * u + v * v
  } while (w >= 1 || w === 0)
  return u * Math.sqrt(nu * (w ** (-2 / nu) - 1) / w) / Math.sqrt(nu / (nu - 2))
}

/** RMS of a float array */
export function rms (values: Float32Array): number {
  let s = 0
  for (let i = 0; i < values.length; i++) {
    s += values[i] * values[i]
  }
  return Math.sqrt(s / Math.max(1, values.length))
}

/** A delta for a tensor of `shape` whose weights have RMS `weightRms`. */
export function realisticDelta (shape: number[], weightRms: number, options: RealisticDeltaOptions, seed: number): Float32Array {
  const rng = new Prng(seed)
  const nu = options.nu ?? REALISTIC_DELTA_DEFAULTS.nu
  const target = options.relRms * weightRms
  if (shape.length === 1) {
    return Float32Array.from({ length: shape[0] }, () => target * studentT(rng, nu))
  }
  const [rows, cols] = shape
  const share = options.lowRankShare ?? REALISTIC_DELTA_DEFAULTS.lowRankShare
  const rank = Math.min(options.rank ?? defaultDeltaRank(rows, cols), rows, cols)
  const decay = options.decay ?? REALISTIC_DELTA_DEFAULTS.decay
  const channelSigma = options.channelSigma ?? REALISTIC_DELTA_DEFAULTS.channelSigma
  // low-rank part: E|L|^2 / (rows cols) = sum_k s_k^2 for unit Gaussian a_k, b_k
  const s = Float64Array.from({ length: rank }, (_, k) => (k + 1) ** -decay)
  const norm = Math.sqrt(s.reduce((x, y) => x + y * y, 0))
  const lowRms = Math.sqrt(share) * target
  for (let k = 0; k < rank; k++) {
    s[k] *= lowRms / norm
  }
  const a = Float64Array.from({ length: rows * rank }, () => rng.normal())
  const b = Float64Array.from({ length: rank * cols }, () => rng.normal())
  // dense part: Student-t entries, a log-normal scale per input column (mean square 1)
  const colScale = Float64Array.from({ length: cols }, () => Math.exp(channelSigma * rng.normal()))
  const meanSq = colScale.reduce((x, y) => x + y * y, 0) / cols
  const denseRms = Math.sqrt(1 - share) * target / Math.sqrt(meanSq)
  const out = new Float32Array(rows * cols)
  const row = new Float64Array(cols)
  for (let i = 0; i < rows; i++) {
    row.fill(0)
    for (let k = 0; k < rank; k++) {
      const c = a[i * rank + k] * s[k]
      const bo = k * cols
      for (let j = 0; j < cols; j++) {
        row[j] += c * b[bo + j]
      }
    }
    const o = i * cols
    for (let j = 0; j < cols; j++) {
      out[o + j] = row[j] + (denseRms > 0 ? denseRms * colScale[j] * studentT(rng, nu) : 0)
    }
  }
  return out
}
