/**
 * Applying decoded deltas to float32 weights with plain typed-array math in
 * a fixed order, so every node computes bit-identical weights for a
 * version (protocols/delta.md, "Apply"). No tfjs: its kernels may sum in
 * another order on another backend.
 *
 * Per element, with every intermediate an IEEE double (JavaScript numbers,
 * no fused multiply-add) and Math.fround the round-to-nearest-even to f32:
 * - dense: d = v[i]
 * - int8: d = fround(q[i] x scale[row])
 * - sparse: d = fround(q x scale) at the listed indices; the other
 * elements are not touched
 * - lowrank: s = +0; for k = 0 .. r-1: s = s + us[i, k] x vt[k, j]; d = fround(s)
 *
 * then w' = fround(w + d). A result that is not finite is an error.
 */
import { deltaRows } from '../protocols/delta.ts'
import { WeightDeltaError, WeightDeltaErrorCode } from './delta-errors.ts'
import { sameShape } from './f32-tensors.ts'
import type { F32Tensor, F32Tensors } from './f32-tensors.ts'
import type { Delta, DeltaTensor } from '../protocols/delta.ts'

/** The dense difference a tensor decodes to (for error measurement and tests; apply does not materialize it). */
export function deltaTensorValues (t: DeltaTensor): Float32Array {
  const n = t.dims.reduce((a, b) => a * b, 1)
  const out = new Float32Array(n)
  switch (t.kind) {
    case 'dense':
      out.set(t.values)
      break
    case 'int8': {
      const { rows, cols } = deltaRows(t.dims)
      const { scales, q } = t
      for (let r = 0; r < rows; r++) {
        const s = scales[r]
        for (let i = r * cols; i < (r + 1) * cols; i++) {
          out[i] = Math.fround(q[i] * s)
        }
      }
      break
    }
    case 'sparse': {
      const { indices, q, scale } = t
      for (let i = 0; i < indices.length; i++) {
        out[indices[i]] = Math.fround(q[i] * scale)
      }
      break
    }
    default: { // lowrank
      const { rows, cols } = deltaRows(t.dims)
      const acc = new Float64Array(cols)
      for (let i = 0; i < rows; i++) {
        lowRankRow(t, i, cols, acc)
        for (let j = 0; j < cols; j++) {
          out[i * cols + j] = Math.fround(acc[j])
        }
      }
      break
    }
  }
  return out
}

/** acc[j] = +0 + us[i, 0] vt[0, j] + ... + us[i, r-1] vt[r-1, j], summed in k order in float64 */
function lowRankRow (t: Extract<DeltaTensor, { kind: 'lowrank' }>, i: number, cols: number, acc: Float64Array): void {
  const { rank: r, us, vt } = t
  const uo = i * r
  acc.fill(0)
  let k = 0
  // four k at a time: JavaScript adds left to right, so each element still sums in k order
  for (; k + 4 <= r; k += 4) {
    const u0 = us[uo + k]
    const u1 = us[uo + k + 1]
    const u2 = us[uo + k + 2]
    const u3 = us[uo + k + 3]
    const o0 = k * cols
    const o1 = o0 + cols
    const o2 = o1 + cols
    const o3 = o2 + cols
    for (let j = 0; j < cols; j++) {
      acc[j] = acc[j] + u0 * vt[o0 + j] + u1 * vt[o1 + j] + u2 * vt[o2 + j] + u3 * vt[o3 + j]
    }
  }
  for (; k < r; k++) {
    const u = us[uo + k]
    const vo = k * cols
    for (let j = 0; j < cols; j++) {
      acc[j] = acc[j] + u * vt[vo + j]
    }
  }
}

function nonFinite (name: string, index: number, w: number): never {
  throw new WeightDeltaError(WeightDeltaErrorCode.NON_FINITE_RESULT, `element ${index} becomes ${w} (float32 overflow)`, { tensor: name })
}

/** w' = fround(w + d) over one tensor, in place. */
function applyTensor (w: Float32Array, t: DeltaTensor): void {
  const name = t.name
  switch (t.kind) {
    case 'dense': {
      const v = t.values
      for (let i = 0; i < w.length; i++) {
        const x = w[i] = Math.fround(w[i] + v[i])
        if (x - x !== 0) {
          nonFinite(name, i, x)
        }
      }
      break
    }
    case 'int8': {
      const { rows, cols } = deltaRows(t.dims)
      const q = t.q
      const scales = t.scales
      for (let r = 0; r < rows; r++) {
        const s = scales[r]
        const end = (r + 1) * cols
        for (let i = r * cols; i < end; i++) {
          const x = w[i] = Math.fround(w[i] + Math.fround(q[i] * s))
          if (x - x !== 0) {
            nonFinite(name, i, x)
          }
        }
      }
      break
    }
    case 'sparse': {
      const { indices, q, scale: s } = t
      for (let e = 0; e < indices.length; e++) {
        const i = indices[e]
        const x = w[i] = Math.fround(w[i] + Math.fround(q[e] * s))
        if (x - x !== 0) {
          nonFinite(name, i, x)
        }
      }
      break
    }
    default: { // lowrank
      const { rows, cols } = deltaRows(t.dims)
      const acc = new Float64Array(cols)
      for (let i = 0; i < rows; i++) {
        lowRankRow(t, i, cols, acc)
        const o = i * cols
        for (let j = 0; j < cols; j++) {
          const x = w[o + j] = Math.fround(w[o + j] + Math.fround(acc[j]))
          if (x - x !== 0) {
            nonFinite(name, o + j, x)
          }
        }
      }
      break
    }
  }
}

/** Throws unless every tensor of `delta` is in `weights` with the delta's dims. */
export function checkDeltaTargets (weights: F32Tensors, delta: Delta): void {
  for (const t of delta.tensors) {
    const w = weights.get(t.name)
    if (w == null) {
      throw new WeightDeltaError(WeightDeltaErrorCode.EXTRA_TENSOR, 'the delta names a tensor the weights do not hold', { tensor: t.name })
    }
    if (!sameShape(w.shape, t.dims) || w.values.length !== t.dims.reduce((a, b) => a * b, 1)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `delta dims [${t.dims.join(', ')}], weights shape [${w.shape.join(', ')}]`, { tensor: t.name })
    }
  }
}

/**
 * Applies `delta` to `weights` in place, tensors in the delta's (name)
 * order. Names and shapes are checked before anything is written. A
 * non-finite result (ERR_DELTA_NON_FINITE_RESULT) leaves the tensors
 * before it updated and that tensor partly updated: discard the weights
 * then (applyDelta() keeps the input intact instead).
 */
export function applyDeltaInPlace (weights: F32Tensors, delta: Delta): void {
  checkDeltaTargets(weights, delta)
  for (const t of delta.tensors) {
    applyTensor((weights.get(t.name) as F32Tensor).values, t)
  }
}

/**
 * `weights` + `delta` as new weights: the tensors the delta changes are
 * fresh arrays, the others are shared with `weights`, which stays as it
 * was (also when this throws).
 */
export function applyDelta (weights: F32Tensors, delta: Delta): F32Tensors {
  checkDeltaTargets(weights, delta)
  const out: F32Tensors = new Map(weights)
  for (const t of delta.tensors) {
    const w = weights.get(t.name) as F32Tensor
    const values = Float32Array.from(w.values)
    applyTensor(values, t)
    out.set(t.name, { shape: [...w.shape], values })
  }
  return out
}
