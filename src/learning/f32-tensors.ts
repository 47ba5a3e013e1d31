/**
 * Weights as float32 arrays by tensor name: the form deltas are computed
 * against and applied to (stored bf16/f16 weights upcast exactly).
 */
import { elementCount, isDtype, toFloat32 } from '../model/safetensors/dtypes.ts'
import { WeightDeltaError, WeightDeltaErrorCode } from './delta-errors.ts'
import type { RawTensor } from '../model/safetensors/dtypes.ts'

export interface F32Tensor {
  shape: number[]
  /** row-major values, length = product of shape */
  values: Float32Array
}

export type F32Tensors = Map<string, F32Tensor>

/** Stored tensors upcast to float32 (exact). F32 data aligned in memory is shared, not copied. */
export function toF32Tensors (tensors: Map<string, RawTensor>): F32Tensors {
  const out: F32Tensors = new Map()
  for (const [name, t] of tensors) {
    if (!isDtype(t.dtype)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.NOT_FLOAT, `dtype ${JSON.stringify(t.dtype)} is not a float dtype blyd reads (F32, F16, BF16)`, { tensor: name })
    }
    const values = toFloat32(t)
    if (values.length !== elementCount(t.shape)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `${values.length} values for shape [${t.shape.join(', ')}]`, { tensor: name })
    }
    out.set(name, { shape: [...t.shape], values })
  }
  return out
}

/** F32 RawTensors over the same memory (for a MapWeightSource). */
export function toRawTensors (tensors: F32Tensors): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>()
  for (const [name, t] of tensors) {
    out.set(name, { dtype: 'F32', shape: [...t.shape], data: new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength) })
  }
  return out
}

/** A deep copy (fresh arrays). */
export function cloneF32Tensors (tensors: F32Tensors): F32Tensors {
  const out: F32Tensors = new Map()
  for (const [name, t] of tensors) {
    out.set(name, { shape: [...t.shape], values: Float32Array.from(t.values) })
  }
  return out
}

export function sameShape (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}
