import { ModelError, ModelErrorCode } from '../errors.ts'

/** The safetensors dtypes blyd reads and writes (Qwen3 ships BF16; F32/F16 for tests and tools). */
export const DTYPE_SIZES = {
  F32: 4,
  F16: 2,
  BF16: 2
} as const

export type Dtype = keyof typeof DTYPE_SIZES

/** One tensor in its stored form: original dtype, row-major bytes. */
export interface RawTensor {
  dtype: Dtype
  shape: number[]
  data: Uint8Array
}

export function isDtype (value: unknown): value is Dtype {
  return typeof value === 'string' && Object.hasOwn(DTYPE_SIZES, value)
}

export function dtypeSize (dtype: string, where: { file?: string, tensor?: string } = {}): number {
  if (!isDtype(dtype)) {
    throw new ModelError(ModelErrorCode.UNKNOWN_DTYPE, `unsupported dtype ${JSON.stringify(dtype)}, expected one of ${Object.keys(DTYPE_SIZES).join(', ')}`, where)
  }
  return DTYPE_SIZES[dtype]
}

export function elementCount (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) {
    n *= d
  }
  return n
}

/** bf16 is the top half of an f32: shift each 16-bit word up by 16 bits. */
export function bf16ToF32 (bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >>> 1
  const out = new Float32Array(n)
  const outBits = new Uint32Array(out.buffer)
  if ((bytes.byteOffset & 1) === 0) {
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n)
    for (let i = 0; i < n; i++) {
      outBits[i] = src[i] << 16
    }
  } else {
    for (let i = 0; i < n; i++) {
      outBits[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16
    }
  }
  return out
}

/** IEEE half to single precision, with subnormals, infinities and NaN. */
export function f16ToF32 (bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >>> 1
  const out = new Float32Array(n)
  const outBits = new Uint32Array(out.buffer)
  for (let i = 0; i < n; i++) {
    const h = bytes[2 * i] | (bytes[2 * i + 1] << 8)
    const sign = (h & 0x8000) << 16
    const exp = (h >> 10) & 0x1f
    let mant = h & 0x3ff
    if (exp === 0) {
      if (mant === 0) {
        outBits[i] = sign
      } else {
        // subnormal: normalise
        let e = -1
        do {
          e++
          mant <<= 1
        } while ((mant & 0x400) === 0)
        outBits[i] = sign | ((127 - 15 - e) << 23) | ((mant & 0x3ff) << 13)
      }
    } else if (exp === 0x1f) {
      outBits[i] = sign | 0x7f800000 | (mant << 13)
    } else {
      outBits[i] = sign | ((exp + 112) << 23) | (mant << 13)
    }
  }
  return out
}

/** f32 to bf16 with round-to-nearest-even (NaN stays NaN). */
export function f32ToBf16 (values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
  const out = new Uint8Array(values.length * 2)
  for (let i = 0; i < values.length; i++) {
    const b = bits[i]
    let h: number
    if ((b & 0x7fffffff) > 0x7f800000) {
      h = (b >>> 16) | 0x40
    } else {
      h = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16
    }
    out[2 * i] = h & 0xff
    out[2 * i + 1] = (h >>> 8) & 0xff
  }
  return out
}

/** Upcast stored bytes to the Float32Array tfjs needs. F32 data is copied only when misaligned. */
export function toFloat32 (tensor: RawTensor): Float32Array {
  const { dtype, data } = tensor
  if (dtype === 'F32') {
    if ((data.byteOffset & 3) === 0) {
      return new Float32Array(data.buffer, data.byteOffset, data.byteLength >>> 2)
    }
    return new Float32Array(data.slice().buffer)
  }
  if (dtype === 'BF16') {
    return bf16ToF32(data)
  }
  return f16ToF32(data)
}

/** Stored form of float values in the given dtype (F16 is not written). */
export function fromFloat32 (values: Float32Array, dtype: 'F32' | 'BF16'): Uint8Array {
  if (dtype === 'F32') {
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength))
  }
  return f32ToBf16(values)
}
