import { ModelError, ModelErrorCode } from '../errors.ts'
import { dtypeSize, elementCount } from './dtypes.ts'
import type { Dtype, RawTensor } from './dtypes.ts'

export type TensorList = Iterable<[string, RawTensor]>

/** A tensor's header entry without its data. */
export interface TensorSpec {
  name: string
  dtype: Dtype
  shape: number[]
}

/**
 * Builds the header of a safetensors file holding `tensors` in the given
 * order (the order is kept so the same unit always encodes to the same
 * bytes). The JSON is space-padded to a multiple of 8 like Hugging Face's.
 */
export function encodeHeader (tensors: TensorList, metadata?: Record<string, string>): Uint8Array {
  const specs: TensorSpec[] = []
  for (const [name, t] of tensors) {
    const expected = elementCount(t.shape) * dtypeSize(t.dtype, { tensor: name })
    if (expected !== t.data.byteLength) {
      throw new ModelError(ModelErrorCode.SIZE_MISMATCH, `shape [${t.shape.join(', ')}] of ${t.dtype} needs ${expected} bytes, got ${t.data.byteLength}`, { tensor: name })
    }
    specs.push({ name, dtype: t.dtype, shape: t.shape })
  }
  return encodeHeaderFromSpecs(specs, metadata)
}

/** The header for tensors whose data will follow in this order (for writers that produce data later). */
export function encodeHeaderFromSpecs (specs: TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {}
  if (metadata != null && Object.keys(metadata).length > 0) {
    header.__metadata__ = metadata
  }
  let offset = 0
  for (const { name, dtype, shape } of specs) {
    if (name === '__metadata__' || Object.hasOwn(header, name)) {
      throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, 'duplicate or reserved tensor name', { tensor: name })
    }
    const length = elementCount(shape) * dtypeSize(dtype, { tensor: name })
    header[name] = { dtype, shape, data_offsets: [offset, offset + length] }
    offset += length
  }
  let json = JSON.stringify(header)
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8
  json += ' '.repeat(pad)
  const body = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + body.byteLength)
  new DataView(out.buffer).setBigUint64(0, BigInt(body.byteLength), true)
  out.set(body, 8)
  return out
}

/** The file as a sequence of parts (header, then each tensor's bytes) for streaming writers. */
export function * safetensorsParts (tensors: TensorList, metadata?: Record<string, string>): Generator<Uint8Array> {
  const list = [...tensors]
  yield encodeHeader(list, metadata)
  for (const [, t] of list) {
    yield t.data
  }
}

/** Serialises `tensors` (original dtype bytes) into one safetensors buffer. */
export function encodeSafetensors (tensors: TensorList, metadata?: Record<string, string>): Uint8Array {
  const parts = [...safetensorsParts(tensors, metadata)]
  const total = parts.reduce((n, p) => n + p.byteLength, 0)
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}
