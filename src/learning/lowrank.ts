/**
 * Rank-r factors of a matrix by randomized subspace iteration (Halko,
 * Martinsson and Tropp 2011, "Finding structure with randomness",
 * algorithm 4.4 followed by the direct SVD of algorithm 5.1), all in
 * float64 with a seeded Gaussian test matrix, so the same input always
 * gives the same factors:
 *
 * 1. l = min(rank + oversample, rows, cols); Omega = N(0, 1)^(cols x l) from Prng(seed)
 * 2. Q = orth(A Omega); q times: Q = orth(A orth(A^T Q))
 * 3. B^T = A^T Q (cols x l); B B^T = W diag(lambda) W^T (cyclic Jacobi, eigenvalues descending)
 * 4. for k < rank: v_k = B^T w_k, sigma_k = |v_k|; (U S)[:, k] = Q w_k sigma_k; V^T[k, :] = v_k / sigma_k
 *
 * orth() is modified Gram-Schmidt run twice (numerically orthogonal
 * columns); a column that vanishes (rank below l) stays zero. Cost: 2 + 2q
 * passes over A of l multiply-adds per element.
 */
import { Prng } from '../model/prng.ts'

export interface LowRankOptions {
  rank: number
  /** extra test vectors beyond the rank (default 8) */
  oversample?: number
  /** power iterations q (default 1) */
  powerIterations?: number
  /** Prng seed of the test matrix (default 1) */
  seed?: number
}

export interface LowRankFactors {
  /** effective rank (<= the requested one, <= min(rows, cols)) */
  rank: number
  /** rows x rank, row-major: U S */
  us: Float32Array
  /** rank x cols, row-major: V^T */
  vt: Float32Array
}

export const LOWRANK_DEFAULTS = { oversample: 8, powerIterations: 1, seed: 1 } as const

/** Y = A X: A rows x cols (f32), X cols x l -> rows x l */
function mulA (a: Float32Array, rows: number, cols: number, x: Float64Array, l: number): Float64Array {
  const y = new Float64Array(rows * l)
  const acc = new Float64Array(l)
  for (let i = 0; i < rows; i++) {
    acc.fill(0)
    const base = i * cols
    for (let j = 0; j < cols; j++) {
      const v = a[base + j]
      if (v === 0) {
        continue
      }
      const xo = j * l
      for (let t = 0; t < l; t++) {
        acc[t] += v * x[xo + t]
      }
    }
    y.set(acc, i * l)
  }
  return y
}

/** Z = A^T Y: A rows x cols (f32), Y rows x l -> cols x l */
function mulAt (a: Float32Array, rows: number, cols: number, y: Float64Array, l: number): Float64Array {
  const z = new Float64Array(cols * l)
  const yi = new Float64Array(l)
  for (let i = 0; i < rows; i++) {
    const base = i * cols
    for (let t = 0; t < l; t++) {
      yi[t] = y[i * l + t]
    }
    for (let j = 0; j < cols; j++) {
      const v = a[base + j]
      if (v === 0) {
        continue
      }
      const zo = j * l
      for (let t = 0; t < l; t++) {
        z[zo + t] += v * yi[t]
      }
    }
  }
  return z
}

/** Orthonormalizes the l columns of m (n x l, row-major) in place: modified Gram-Schmidt, twice. */
function orthonormalize (m: Float64Array, n: number, l: number): void {
  const norms0 = new Float64Array(l)
  for (let c = 0; c < l; c++) {
    let s = 0
    for (let i = 0; i < n; i++) {
      s += m[i * l + c] * m[i * l + c]
    }
    norms0[c] = Math.sqrt(s)
  }
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < l; c++) {
      for (let p = 0; p < c; p++) {
        let dot = 0
        for (let i = 0; i < n; i++) {
          dot += m[i * l + p] * m[i * l + c]
        }
        if (dot === 0) {
          continue
        }
        for (let i = 0; i < n; i++) {
          m[i * l + c] -= dot * m[i * l + p]
        }
      }
      let s = 0
      for (let i = 0; i < n; i++) {
        s += m[i * l + c] * m[i * l + c]
      }
      const norm = Math.sqrt(s)
      // a column that lost (almost) everything to the earlier ones is dependent: zero it
      if (norm <= 1e-12 * norms0[c] || norm === 0) {
        for (let i = 0; i < n; i++) {
          m[i * l + c] = 0
        }
      } else {
        for (let i = 0; i < n; i++) {
          m[i * l + c] /= norm
        }
      }
    }
  }
}

/** Eigen-decomposition of a symmetric l x l matrix (row-major) by cyclic Jacobi: values descending, vectors as columns. */
export function symmetricEigen (g: Float64Array, l: number): { values: Float64Array, vectors: Float64Array } {
  const a = Float64Array.from(g)
  const v = new Float64Array(l * l)
  for (let i = 0; i < l; i++) {
    v[i * l + i] = 1
  }
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0
    let diag = 0
    for (let p = 0; p < l; p++) {
      diag += a[p * l + p] * a[p * l + p]
      for (let q = p + 1; q < l; q++) {
        off += a[p * l + q] * a[p * l + q]
      }
    }
    if (off <= 1e-30 * diag || off === 0) {
      break
    }
    for (let p = 0; p < l - 1; p++) {
      for (let q = p + 1; q < l; q++) {
        const apq = a[p * l + q]
        if (apq === 0) {
          continue
        }
        const app = a[p * l + p]
        const aqq = a[q * l + q]
        const theta = (aqq - app) / (2 * apq)
        const t = Math.sign(theta === 0 ? 1 : theta) / (Math.abs(theta) + Math.sqrt(theta * theta + 1))
        const c = 1 / Math.sqrt(t * t + 1)
        const s = t * c
        for (let k = 0; k < l; k++) {
          const akp = a[k * l + p]
          const akq = a[k * l + q]
          a[k * l + p] = c * akp - s * akq
          a[k * l + q] = s * akp + c * akq
        }
        for (let k = 0; k < l; k++) {
          const apk = a[p * l + k]
          const aqk = a[q * l + k]
          a[p * l + k] = c * apk - s * aqk
          a[q * l + k] = s * apk + c * aqk
        }
        for (let k = 0; k < l; k++) {
          const vkp = v[k * l + p]
          const vkq = v[k * l + q]
          v[k * l + p] = c * vkp - s * vkq
          v[k * l + q] = s * vkp + c * vkq
        }
      }
    }
  }
  const order = Array.from({ length: l }, (_, i) => i).sort((x, y) => a[y * l + y] - a[x * l + x] || x - y)
  const values = new Float64Array(l)
  const vectors = new Float64Array(l * l)
  order.forEach((src, dst) => {
    values[dst] = a[src * l + src]
    for (let k = 0; k < l; k++) {
      vectors[k * l + dst] = v[k * l + src]
    }
  })
  return { values, vectors }
}

/** Rank-`rank` factors of `a` (rows x cols, row-major); see the file comment for the algorithm. */
export function lowRankFactors (a: Float32Array, rows: number, cols: number, options: LowRankOptions): LowRankFactors {
  const oversample = options.oversample ?? LOWRANK_DEFAULTS.oversample
  const q = options.powerIterations ?? LOWRANK_DEFAULTS.powerIterations
  const rng = new Prng(options.seed ?? LOWRANK_DEFAULTS.seed)
  if (a.length !== rows * cols) {
    throw new RangeError(`matrix has ${a.length} values, ${rows} x ${cols} needs ${rows * cols}`)
  }
  const rank = Math.min(options.rank, rows, cols)
  const l = Math.min(rank + oversample, rows, cols)
  const omega = new Float64Array(cols * l)
  for (let i = 0; i < omega.length; i++) {
    omega[i] = rng.normal()
  }
  let qm = mulA(a, rows, cols, omega, l)
  orthonormalize(qm, rows, l)
  for (let it = 0; it < q; it++) {
    const z = mulAt(a, rows, cols, qm, l)
    orthonormalize(z, cols, l)
    qm = mulA(a, rows, cols, z, l)
    orthonormalize(qm, rows, l)
  }
  const bt = mulAt(a, rows, cols, qm, l) // cols x l = (Q^T A)^T
  const g = new Float64Array(l * l)
  for (let j = 0; j < cols; j++) {
    const o = j * l
    for (let s = 0; s < l; s++) {
      const x = bt[o + s]
      if (x === 0) {
        continue
      }
      for (let t = s; t < l; t++) {
        g[s * l + t] += x * bt[o + t]
      }
    }
  }
  for (let s = 0; s < l; s++) {
    for (let t = 0; t < s; t++) {
      g[s * l + t] = g[t * l + s]
    }
  }
  const { vectors: w } = symmetricEigen(g, l)
  const us = new Float32Array(rows * rank)
  const vt = new Float32Array(rank * cols)
  const vk = new Float64Array(cols)
  for (let k = 0; k < rank; k++) {
    let ss = 0
    for (let j = 0; j < cols; j++) {
      let s = 0
      for (let t = 0; t < l; t++) {
        s += bt[j * l + t] * w[t * l + k]
      }
      vk[j] = s
      ss += s * s
    }
    const sigma = Math.sqrt(ss)
    if (sigma === 0) {
      continue
    }
    for (let j = 0; j < cols; j++) {
      vt[k * cols + j] = vk[j] / sigma
    }
    for (let i = 0; i < rows; i++) {
      let s = 0
      for (let t = 0; t < l; t++) {
        s += qm[i * l + t] * w[t * l + k]
      }
      us[i * rank + k] = s * sigma
    }
  }
  return { rank, us, vt }
}
