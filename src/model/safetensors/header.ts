import { ModelError, ModelErrorCode } from '../errors.ts'
import { dtypeSize, elementCount, isDtype } from './dtypes.ts'
import type { Dtype } from './dtypes.ts'

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000

/** One tensor's entry in a safetensors header, with offsets made absolute to the file. */
export interface TensorEntry {
  name: string
  dtype: Dtype
  shape: number[]
  /** byte offset of the tensor data from the start of the file */
  start: number
  /** byte length of the tensor data */
  length: number
}

export interface SafetensorsHeader {
  /** bytes before the tensor data: 8 + header JSON length */
  dataStart: number
  metadata: Record<string, string>
  /** entries in file order */
  tensors: TensorEntry[]
  byName: Map<string, TensorEntry>
}

/**
 * Reads the 8-byte little-endian header length. `fileSize` is the size of the
 * whole file (or buffer) so a length that runs past the end is caught here.
 */
export function readHeaderLength (prefix: Uint8Array, fileSize: number, file?: string): number {
  if (prefix.byteLength < 8 || fileSize < 8) {
    throw new ModelError(ModelErrorCode.HEADER_PAST_EOF, `file is ${fileSize} bytes, shorter than the 8-byte header length`, { file })
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8)
  const len = view.getBigUint64(0, true)
  if (len > BigInt(MAX_HEADER_BYTES)) {
    throw new ModelError(ModelErrorCode.HEADER_PAST_EOF, `header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit`, { file })
  }
  const n = Number(len)
  if (8 + n > fileSize) {
    throw new ModelError(ModelErrorCode.HEADER_PAST_EOF, `header length ${n} runs past the end of the ${fileSize}-byte file`, { file })
  }
  return n
}

/** Parses and validates the JSON header; `fileSize` bounds the data offsets. */
export function parseHeader (json: Uint8Array, fileSize: number, file?: string): SafetensorsHeader {
  const dataStart = 8 + json.byteLength
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json))
  } catch (err: any) {
    throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, `header is not valid JSON: ${err.message}`, { file }, { cause: err })
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, 'header JSON is not an object', { file })
  }
  const metadata: Record<string, string> = {}
  const tensors: TensorEntry[] = []
  const dataLength = fileSize - dataStart
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value == null || typeof value !== 'object' || Array.isArray(value)) {
        throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, '__metadata__ is not an object', { file })
      }
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') {
          throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, `__metadata__.${k} is not a string`, { file })
        }
        metadata[k] = v
      }
      continue
    }
    tensors.push(parseEntry(name, value, dataStart, dataLength, file))
  }
  tensors.sort((a, b) => a.start - b.start)
  let expected = dataStart
  for (const t of tensors) {
    if (t.start !== expected) {
      const what = t.start < expected ? 'overlaps the previous tensor' : `leaves a hole of ${t.start - expected} bytes before it`
      throw new ModelError(ModelErrorCode.BAD_OFFSETS, `data range ${what}`, { file, tensor: t.name })
    }
    expected = t.start + t.length
  }
  if (expected !== fileSize) {
    throw new ModelError(ModelErrorCode.BAD_OFFSETS, `tensor data ends at byte ${expected} but the file has ${fileSize} bytes`, { file })
  }
  const byName = new Map(tensors.map(t => [t.name, t]))
  return { dataStart, metadata, tensors, byName }
}

function parseEntry (name: string, value: unknown, dataStart: number, dataLength: number, file?: string): TensorEntry {
  const where = { file, tensor: name }
  if (value == null || typeof value !== 'object') {
    throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, 'entry is not an object', where)
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>
  if (!isDtype(dtype)) {
    dtypeSize(String(dtype), where)
  }
  if (!Array.isArray(shape) || !shape.every(d => Number.isSafeInteger(d) && d >= 0)) {
    throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, 'shape is not a list of non-negative integers', where)
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(d => Number.isSafeInteger(d) && d >= 0) || offsets[1] < offsets[0]) {
    throw new ModelError(ModelErrorCode.BAD_HEADER_JSON, 'data_offsets is not [begin, end] with begin <= end', where)
  }
  const [begin, end] = offsets as [number, number]
  if (end > dataLength) {
    throw new ModelError(ModelErrorCode.OFFSETS_PAST_EOF, `data_offsets end ${end} is past the ${dataLength} bytes of tensor data`, where)
  }
  const expected = elementCount(shape) * dtypeSize(dtype as string, where)
  if (expected !== end - begin) {
    throw new ModelError(ModelErrorCode.SIZE_MISMATCH, `shape [${shape.join(', ')}] of ${String(dtype)} needs ${expected} bytes, data_offsets give ${end - begin}`, where)
  }
  return { name, dtype: dtype as Dtype, shape: shape.slice(), start: dataStart + begin, length: end - begin }
}
