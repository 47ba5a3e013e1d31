/**
 * The exact per-tensor difference between a checkpoint and the live
 * weights, the input of every delta codec.
 */
import { elementCount, isDtype, toFloat32 } from '../model/safetensors/dtypes.ts'
import { WeightDeltaError, WeightDeltaErrorCode } from './delta-errors.ts'
import { sameShape } from './f32-tensors.ts'
import type { F32Tensor, F32Tensors } from './f32-tensors.ts'
import type { RawTensor } from '../model/safetensors/dtypes.ts'

export interface WeightDiff {
  /** checkpoint - live per tensor, float32 (every tensor of the live weights, zero ones included) */
  diffs: F32Tensors
  /** tensors whose difference is not all zero, in name order */
  changed: string[]
  /** elements of the changed tensors */
  changedParams: number
  /**
   * elements where live + diff (rounded to f32, as apply does) is not the
   * checkpoint's value: the difference of two f32 values is not always an
   * f32 value (it is when they are within a factor 2 of each other,
   * Sterbenz), so even the f32 codec cannot carry these exactly
   */
  inexact: number
}

/**
 * diff = fround(checkpoint - live) per tensor, for the tensors of `live`.
 * The checkpoint must hold exactly the same names with the same shapes, in
 * a float dtype (F32, F16, BF16; upcast exactly), all values finite.
 * Nothing is modified.
 */
export function weightDiff (checkpoint: Map<string, RawTensor>, live: F32Tensors): WeightDiff {
  for (const name of [...live.keys()].sort()) {
    if (!checkpoint.has(name)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.MISSING_TENSOR, 'the checkpoint lacks a tensor of the model', { tensor: name })
    }
  }
  for (const name of [...checkpoint.keys()].sort()) {
    if (!live.has(name)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.EXTRA_TENSOR, 'the checkpoint holds a tensor the model does not have', { tensor: name })
    }
    const c = checkpoint.get(name) as RawTensor
    const w = live.get(name) as F32Tensor
    if (!isDtype(c.dtype)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.NOT_FLOAT, `dtype ${JSON.stringify(c.dtype)} is not a float dtype blyd reads (F32, F16, BF16)`, { tensor: name })
    }
    if (!sameShape(c.shape, w.shape)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `checkpoint shape [${c.shape.join(', ')}], model shape [${w.shape.join(', ')}]`, { tensor: name })
    }
  }
  const diffs: F32Tensors = new Map()
  const changed: string[] = []
  let changedParams = 0
  let inexact = 0
  for (const name of [...live.keys()].sort()) {
    const w = live.get(name) as F32Tensor
    const cv = toFloat32(checkpoint.get(name) as RawTensor)
    const n = elementCount(w.shape)
    if (cv.length !== n || w.values.length !== n) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `${cv.length} checkpoint values and ${w.values.length} model values for ${n} elements`, { tensor: name })
    }
    const d = new Float32Array(n)
    let nonzero = false
    for (let i = 0; i < n; i++) {
      const c = cv[i]
      const x = c - w.values[i]
      d[i] = x
      const di = d[i]
      if (di - di !== 0) {
        const what = c - c !== 0 ? `checkpoint value ${c}` : `difference ${di} (checkpoint ${c}, model ${w.values[i]})`
        throw new WeightDeltaError(WeightDeltaErrorCode.NON_FINITE_INPUT, `element ${i}: ${what} is not finite`, { tensor: name })
      }
      if (di !== 0) {
        nonzero = true
      }
      // what apply computes: fround(w + d); compare bit patterns (keeps -0 apart from +0)
      const back = Math.fround(w.values[i] + di)
      if (back !== c || (back === 0 && Object.is(back, -0) !== Object.is(c, -0))) {
        inexact++
      }
    }
    diffs.set(name, { shape: [...w.shape], values: d })
    if (nonzero) {
      changed.push(name)
      changedParams += n
    }
  }
  return { diffs, changed, changedParams, inexact }
}
