/**
 * Canonical codec of weight-delta payloads (normative text: protocols/delta.md).
 *
 * A Delta block's payload is one zstd frame around a canonical body:
 * "BLYD", version, codec, then the tensors in ascending UTF-8 name order,
 * each with its dims and a codec body (f32, int8 per-row scale, sparse
 * top-k, lowrank factors). Little-endian throughout.
 *
 * The decoder is strict: it checks every field as it reads (bounds before
 * any allocation, so a hostile length never allocates more than the body
 * holds), rejects each kind of non-canonical input with its own
 * DeltaFormatError code, and finally re-encodes the decoded delta and
 * compares bytes, so one delta has exactly one body. The compressed frame
 * is not canonical (zstd versions differ in their output): identity of a
 * delta is its body, e.g. sha-256(body).
 *
 * Decoded arrays may share memory with the body they came from (int8
 * values, aligned f32 runs): treat them as read-only.
 */
import { constants as zlibConstants, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { DeltaFormatError, DeltaFormatErrorCode as E } from './delta-errors.ts'
import { ZstdFrameError, readZstdFrame } from './zstd-frame.ts'

/** "BLYD" */
export const DELTA_MAGIC = Uint8Array.of(0x42, 0x4c, 0x59, 0x44)
export const DELTA_FORMAT_VERSION = 1
/** codec names; the codec byte is the index + 1 */
export const DELTA_CODECS = ['f32', 'int8', 'sparse', 'lowrank'] as const
export type DeltaCodec = typeof DELTA_CODECS[number]
/** largest decompressed body a decoder accepts by default: an f32 delta of Qwen3-8B's embedding (2.49 GB) fits */
export const MAX_DELTA_BODY = 3 * 1024 ** 3
/** most tensors in one delta (a unit has about a dozen) */
export const MAX_DELTA_TENSORS = 1024
/** most elements of one tensor: sparse indices are u32 */
export const MAX_DELTA_ELEMENTS = 0xffffffff
/** zstd level the encoder uses (any level decodes) */
export const DELTA_ZSTD_LEVEL = 3
/** largest zstd window (log2 bytes) a decoder accepts: zstd's own default limit; level 3 uses 2^21 */
export const DELTA_ZSTD_WINDOW_LOG_MAX = 27
/** largest output chunk the decompressor allocates up front (bodies above it are gathered in chunks of this size) */
const DECOMPRESS_CHUNK_MAX = 64 * 1024 * 1024
/** fixed header: magic, version, codec, tensor count */
const HEADER_BYTES = 4 + 1 + 1 + 4

/** Dense f32 values (codec f32; the 1-D tensors of codec lowrank). */
export interface DenseDeltaTensor {
  kind: 'dense'
  name: string
  dims: number[]
  /** n values, row-major */
  values: Float32Array
}

/** Per-row int8 (codec int8): value = fround(q x scale of its row); a row is the last dim, a 1-D tensor is one row. */
export interface Int8DeltaTensor {
  kind: 'int8'
  name: string
  dims: number[]
  /** one f32 scale per row, >= +0; 0 exactly when the row's q are all 0 */
  scales: Float32Array
  /** n values in [-127, 127]; a row with scale > 0 has max |q| = 127 */
  q: Int8Array
}

/** Top-k entries (codec sparse): value at indices[i] = fround(q[i] x scale), every other element 0. */
export interface SparseDeltaTensor {
  kind: 'sparse'
  name: string
  dims: number[]
  /** an f32 value, >= +0; 0 exactly when k = 0 */
  scale: number
  /** k flat row-major indices, strictly ascending, < n */
  indices: Uint32Array
  /** k values in [-127, 127] \ {0}; max |q| = 127 when k > 0 */
  q: Int8Array
}

/** Rank-r factors of a 2-D tensor [rows, cols] (codec lowrank): value[i, j] = fround(sum_k us[i, k] x vt[k, j]). */
export interface LowRankDeltaTensor {
  kind: 'lowrank'
  name: string
  dims: number[]
  rank: number
  /** rows x rank, row-major (U x S) */
  us: Float32Array
  /** rank x cols, row-major (V^T) */
  vt: Float32Array
}

export type DeltaTensor = DenseDeltaTensor | Int8DeltaTensor | SparseDeltaTensor | LowRankDeltaTensor

/** A decoded delta: one codec for every tensor, tensors in canonical (UTF-8 byte) name order after decoding. */
export interface Delta {
  codec: DeltaCodec
  tensors: DeltaTensor[]
}

export interface DecodeDeltaOptions {
  /** the codec the Delta block's header names: a body of another codec is rejected */
  codec?: DeltaCodec
  /** reject bodies larger than this (default MAX_DELTA_BODY) */
  maxBodyBytes?: number
}

export interface DecodedDeltaPayload {
  delta: Delta
  /** the canonical body (what identifies the delta) */
  body: Uint8Array
}

const utf8 = new TextEncoder()

function fail (code: typeof E[keyof typeof E], message: string, tensor?: string): never {
  throw new DeltaFormatError(code, message, { tensor })
}

export function isDeltaCodec (value: unknown): value is DeltaCodec {
  return typeof value === 'string' && (DELTA_CODECS as readonly string[]).includes(value)
}

/** Elements of a tensor with these dims (checked: 1 or 2 dims, each >= 1, product <= MAX_DELTA_ELEMENTS). */
export function deltaElementCount (dims: readonly number[], tensor?: string): number {
  if (!Array.isArray(dims) || dims.length < 1 || dims.length > 2) {
    fail(E.BAD_DIMS, `a delta tensor has 1 or 2 dims, got ${Array.isArray(dims) ? dims.length : typeof dims}`, tensor)
  }
  let n = 1
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 1 || d > 0xffffffff) {
      fail(E.BAD_DIMS, `dimension ${d} is not an integer in [1, 2^32 - 1]`, tensor)
    }
    n *= d
  }
  if (n > MAX_DELTA_ELEMENTS) {
    fail(E.BAD_DIMS, `${dims.join(' x ')} elements exceed ${MAX_DELTA_ELEMENTS}`, tensor)
  }
  return n
}

/** [rows, cols] of a tensor: a row is the last dim, a 1-D tensor is one row. */
export function deltaRows (dims: readonly number[]): { rows: number, cols: number } {
  return dims.length === 1 ? { rows: 1, cols: dims[0] } : { rows: dims[0], cols: dims[1] }
}

/** bytewise order of two byte strings (-1, 0, 1) */
function compareBytes (a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** index of the first NaN / infinity in `values`, or -1 */
function firstNonFinite (values: Float32Array): number {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) {
      return i
    }
  }
  return -1
}

function checkFinite (values: Float32Array, what: string, tensor: string): void {
  const at = firstNonFinite(values)
  if (at >= 0) {
    fail(E.NON_FINITE, `${what}[${at}] is ${values[at]}`, tensor)
  }
}

/** a scale must be an f32 value, finite, and +0 or positive (a sign bit set, -0 included, is refused) */
function checkScale (scale: number, what: string, tensor: string): void {
  if (!Number.isFinite(scale)) {
    fail(E.NON_FINITE, `${what} is ${scale}`, tensor)
  }
  if (Math.fround(scale) !== scale) {
    fail(E.BAD_QUANT, `${what} ${scale} is not a float32 value`, tensor)
  }
  if (scale < 0 || Object.is(scale, -0)) {
    fail(E.BAD_QUANT, `${what} is negative`, tensor)
  }
}

function checkLength (actual: number, expected: number, what: string, tensor: string): void {
  if (actual !== expected) {
    fail(E.BAD_LENGTH, `${what} has ${actual} entries, dims need ${expected}`, tensor)
  }
}

/** int8 canonical form: q in [-127, 127]; per row, scale 0 <=> all q 0, scale > 0 => max |q| = 127. */
function checkInt8 (t: Int8DeltaTensor): void {
  const { rows, cols } = deltaRows(t.dims)
  const { scales, q } = t
  checkFinite(scales, 'scale', t.name)
  for (let r = 0; r < rows; r++) {
    const scale = scales[r]
    checkScale(scale, `row ${r} scale`, t.name)
    let max = 0
    let min = 0
    const end = (r + 1) * cols
    for (let i = r * cols; i < end; i++) {
      const v = q[i]
      if (v > max) {
        max = v
      }
      if (v < min) {
        min = v
      }
    }
    if (min === -128) {
      fail(E.BAD_QUANT, `row ${r} holds a q of -128 (the range is [-127, 127])`, t.name)
    }
    const top = Math.max(max, -min)
    if (scale === 0 ? top !== 0 : top !== 127) {
      fail(E.BAD_QUANT, `row ${r}: scale ${scale} with max |q| ${top} (scale 0 needs all q 0, else max |q| is 127)`, t.name)
    }
  }
}

/** sparse canonical form: indices ascending < n; q in [-127, 127] \ {0}; k = 0 <=> scale 0; k > 0 => max |q| = 127. */
function checkSparse (t: SparseDeltaTensor, n: number): void {
  const { indices, q: qs } = t
  const k = indices.length
  if (k > n) {
    fail(E.K_RANGE, `k ${k} exceeds the ${n} elements`, t.name)
  }
  checkScale(t.scale, 'scale', t.name)
  let prev = -1
  for (let i = 0; i < k; i++) {
    const idx = indices[i]
    if (idx <= prev || idx >= n) {
      fail(E.INDEX_ORDER, `index ${i} (${idx}) is not in (${prev}, ${n})`, t.name)
    }
    prev = idx
  }
  let max = 0
  for (let i = 0; i < k; i++) {
    const q = qs[i]
    if (q === 0 || q === -128) {
      fail(E.BAD_QUANT, `q[${i}] is ${q} (sparse values are in [-127, 127] without 0)`, t.name)
    }
    const a = q < 0 ? -q : q
    if (a > max) {
      max = a
    }
  }
  if (k === 0 ? t.scale !== 0 : (max !== 127 || t.scale === 0)) {
    fail(E.BAD_QUANT, `scale ${t.scale} with k ${k} and max |q| ${max} (k 0 needs scale 0, else max |q| is 127 and scale > 0)`, t.name)
  }
}

function checkRank (rank: number, rows: number, cols: number, tensor: string): void {
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > Math.min(rows, cols, 0xffff)) {
    fail(E.RANK_RANGE, `rank ${rank} is not in [1, min(${rows}, ${cols})]`, tensor)
  }
}

/** The tensor kinds a codec allows for a tensor of `ndim` dims. */
function kindFor (codec: DeltaCodec, ndim: number): DeltaTensor['kind'] {
  switch (codec) {
    case 'f32': return 'dense'
    case 'int8': return 'int8'
    case 'sparse': return 'sparse'
    default: return ndim === 2 ? 'lowrank' : 'dense'
  }
}

/** Checks one tensor as the encoder receives it (arrays, lengths, values); returns its element count. */
function checkTensor (t: DeltaTensor, codec: DeltaCodec): number {
  const name = t.name
  const n = deltaElementCount(t.dims, name)
  const want = kindFor(codec, t.dims.length)
  if (t.kind !== want) {
    fail(E.BAD_KIND, `codec ${codec} stores a ${t.dims.length}-D tensor as ${want}, got ${String(t.kind)}`, name)
  }
  const { rows, cols } = deltaRows(t.dims)
  switch (t.kind) {
    case 'dense':
      if (!(t.values instanceof Float32Array)) {
        fail(E.BAD_LENGTH, 'values must be a Float32Array', name)
      }
      checkLength(t.values.length, n, 'values', name)
      checkFinite(t.values, 'value', name)
      break
    case 'int8':
      if (!(t.scales instanceof Float32Array) || !(t.q instanceof Int8Array)) {
        fail(E.BAD_LENGTH, 'scales must be a Float32Array and q an Int8Array', name)
      }
      checkLength(t.scales.length, rows, 'scales', name)
      checkLength(t.q.length, n, 'q', name)
      checkInt8(t)
      break
    case 'sparse':
      if (!(t.indices instanceof Uint32Array) || !(t.q instanceof Int8Array)) {
        fail(E.BAD_LENGTH, 'indices must be a Uint32Array and q an Int8Array', name)
      }
      checkLength(t.q.length, t.indices.length, 'q', name)
      checkSparse(t, n)
      break
    default: // lowrank
      if (!(t.us instanceof Float32Array) || !(t.vt instanceof Float32Array)) {
        fail(E.BAD_LENGTH, 'us and vt must be Float32Arrays', name)
      }
      checkRank(t.rank, rows, cols, name)
      checkLength(t.us.length, rows * t.rank, 'us', name)
      checkLength(t.vt.length, t.rank * cols, 'vt', name)
      checkFinite(t.us, 'us', name)
      checkFinite(t.vt, 'vt', name)
      break
  }
  return n
}

function varintLength (value: number): number {
  let len = 1
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) {
    len++
  }
  return len
}

function tensorBodyLength (t: DeltaTensor, n: number): number {
  switch (t.kind) {
    case 'dense': return 4 * n
    case 'int8': return 4 * t.scales.length + n
    case 'lowrank': return 2 + 4 * (t.us.length + t.vt.length)
    default: { // sparse
      const indices = t.indices
      let len = 8 + t.q.length
      let prev = -1
      for (let i = 0; i < indices.length; i++) {
        len += varintLength(indices[i] - prev - 1)
        prev = indices[i]
      }
      return len
    }
  }
}

function bytesOf (a: Float32Array | Int8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
}

interface BodyEntry {
  t: DeltaTensor
  name: Uint8Array
  bodyLength: number
}

/**
 * The canonical body of `delta`. Tensors may come in any order (they are
 * written in UTF-8 name order); everything the decoder would refuse is
 * refused here with the same code, so every body this returns decodes.
 */
export function encodeDeltaBody (delta: Delta): Uint8Array {
  if (!isDeltaCodec(delta.codec)) {
    fail(E.BAD_KIND, `unknown codec ${JSON.stringify(delta.codec)}`)
  }
  const count = delta.tensors.length
  if (count < 1 || count > MAX_DELTA_TENSORS) {
    fail(E.BAD_COUNT, `a delta has 1 to ${MAX_DELTA_TENSORS} tensors, got ${count}`)
  }
  const entries = delta.tensors.map(t => {
    if (typeof t.name !== 'string' || t.name.length === 0 || !t.name.isWellFormed()) {
      fail(E.BAD_NAME, `tensor name ${JSON.stringify(t.name)} is empty or not well-formed Unicode`)
    }
    const name = utf8.encode(t.name)
    if (name.length > 0xffff) {
      fail(E.BAD_NAME, `name is ${name.length} bytes (max 65535)`, t.name)
    }
    const n = checkTensor(t, delta.codec)
    return { t, name, bodyLength: tensorBodyLength(t, n) }
  })
  entries.sort((a, b) => compareBytes(a.name, b.name))
  for (let i = 1; i < entries.length; i++) {
    if (compareBytes(entries[i - 1].name, entries[i].name) === 0) {
      fail(E.NAME_ORDER, 'duplicate tensor name', entries[i].t.name)
    }
  }
  return writeBody(delta.codec, entries)
}

/** bytes of one tensor entry: name length, name, ndim, dims, codec body */
function entryLength (e: BodyEntry): number {
  return 2 + e.name.length + 1 + 4 * e.t.dims.length + e.bodyLength
}

/** Where an entry's bytes go, in order: a body being written, or a body being compared against. */
interface ByteSink {
  put(chunk: Uint8Array): void
}

/** A sink writing into `out` from `pos`. */
function writer (out: Uint8Array, pos: number): ByteSink {
  return {
    put: chunk => {
      out.set(chunk, pos)
      pos += chunk.length
    }
  }
}

/** Writes checked entries, already in name order. */
function writeBody (codec: DeltaCodec, entries: BodyEntry[]): Uint8Array {
  let size = HEADER_BYTES
  for (const e of entries) {
    size += entryLength(e)
  }
  if (size > MAX_DELTA_BODY) {
    fail(E.TOO_LARGE, `body of ${size} bytes exceeds ${MAX_DELTA_BODY}`)
  }
  const out = new Uint8Array(size)
  const sink = writer(out, 0)
  sink.put(writeHeader(codec, entries.length))
  for (const e of entries) {
    writeEntry(sink, e)
  }
  return out
}

function writeHeader (codec: DeltaCodec, count: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES)
  out.set(DELTA_MAGIC, 0)
  out[4] = DELTA_FORMAT_VERSION
  out[5] = DELTA_CODECS.indexOf(codec) + 1
  new DataView(out.buffer).setUint32(6, count, true)
  return out
}

/**
 * Puts one entry: its small fields as fresh bytes, its bulk arrays
 * (values, scales, q, factors) as views of the arrays, never copied.
 */
function writeEntry (sink: ByteSink, { t, name }: BodyEntry): void {
  const extra = t.kind === 'lowrank' ? 2 : 0
  const head = new Uint8Array(2 + name.length + 1 + 4 * t.dims.length + extra)
  const view = new DataView(head.buffer)
  view.setUint16(0, name.length, true)
  head.set(name, 2)
  let pos = 2 + name.length
  head[pos++] = t.dims.length
  for (const d of t.dims) {
    view.setUint32(pos, d, true)
    pos += 4
  }
  switch (t.kind) {
    case 'dense':
      sink.put(head)
      sink.put(bytesOf(t.values))
      break
    case 'int8':
      sink.put(head)
      sink.put(bytesOf(t.scales))
      sink.put(bytesOf(t.q))
      break
    case 'sparse': {
      sink.put(head)
      const indices = t.indices
      const k = indices.length
      let len = 8
      let prev = -1
      for (let i = 0; i < k; i++) {
        len += varintLength(indices[i] - prev - 1)
        prev = indices[i]
      }
      const fields = new Uint8Array(len)
      const fv = new DataView(fields.buffer)
      fv.setUint32(0, k, true)
      fv.setFloat32(4, t.scale, true)
      let at = 8
      prev = -1
      for (let i = 0; i < k; i++) {
        let v = indices[i] - prev - 1
        prev = indices[i]
        while (v > 0x7f) {
          fields[at++] = (v & 0x7f) | 0x80
          v = Math.floor(v / 128)
        }
        fields[at++] = v
      }
      sink.put(fields)
      sink.put(bytesOf(t.q))
      break
    }
    default: // lowrank
      view.setUint16(pos, t.rank, true)
      sink.put(head)
      sink.put(bytesOf(t.us))
      sink.put(bytesOf(t.vt))
      break
  }
}

/** Bounds-checked little-endian reads over a body; running past the end is ERR_DELTA_TRUNCATED. */
class BodyReader {
  readonly bytes: Uint8Array
  private readonly view: DataView
  pos: number
  tensor?: string

  constructor (bytes: Uint8Array) {
    this.bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.pos = 0
  }

  get remaining (): number {
    return this.bytes.length - this.pos
  }

  need (n: number, what: string): void {
    if (n > this.remaining) {
      fail(E.TRUNCATED, `body ends inside ${what} (${n} bytes needed at offset ${this.pos}, ${this.remaining} left)`, this.tensor)
    }
  }

  u8 (what: string): number {
    this.need(1, what)
    return this.bytes[this.pos++]
  }

  u16 (what: string): number {
    this.need(2, what)
    const v = this.view.getUint16(this.pos, true)
    this.pos += 2
    return v
  }

  u32 (what: string): number {
    this.need(4, what)
    const v = this.view.getUint32(this.pos, true)
    this.pos += 4
    return v
  }

  f32 (what: string): number {
    this.need(4, what)
    const v = this.view.getFloat32(this.pos, true)
    this.pos += 4
    return v
  }

  /** a view of the next n bytes */
  take (n: number, what: string): Uint8Array {
    this.need(n, what)
    const v = this.bytes.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  /** n f32 values: a view when aligned, else a copy */
  f32s (n: number, what: string): Float32Array {
    const raw = this.take(4 * n, what)
    if ((raw.byteOffset & 3) === 0) {
      return new Float32Array(raw.buffer, raw.byteOffset, n)
    }
    const copy = new Float32Array(n)
    new Uint8Array(copy.buffer).set(raw)
    return copy
  }

  i8s (n: number, what: string): Int8Array {
    const raw = this.take(n, what)
    return new Int8Array(raw.buffer, raw.byteOffset, n)
  }

  /** minimal unsigned LEB128 of at most 32 bits */
  varint (what: string): number {
    let v = 0
    let mul = 1
    for (let i = 0; i < 5; i++) {
      const b = this.u8(what)
      if (i === 4 && b > 0x0f) {
        fail(E.BAD_VARINT, `${what} exceeds 2^32 - 1`, this.tensor)
      }
      v += (b & 0x7f) * mul
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) {
          fail(E.BAD_VARINT, `${what} is not minimally encoded`, this.tensor)
        }
        return v
      }
      mul *= 128
    }
    fail(E.BAD_VARINT, `${what} is longer than 5 bytes`, this.tensor)
  }
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function readTensor (r: BodyReader, codec: DeltaCodec, index: number): { tensor: DeltaTensor, nameBytes: Uint8Array } {
  r.tensor = undefined
  const nameLen = r.u16(`tensor ${index} name length`)
  if (nameLen === 0) {
    fail(E.BAD_NAME, `tensor ${index} has an empty name`)
  }
  const nameBytes = r.take(nameLen, `tensor ${index} name`)
  let name: string
  try {
    name = utf8Strict.decode(nameBytes)
  } catch (err) {
    throw new DeltaFormatError(E.BAD_NAME, `tensor ${index} name is not valid UTF-8`, {}, { cause: err })
  }
  r.tensor = name
  const ndim = r.u8('ndim')
  if (ndim < 1 || ndim > 2) {
    fail(E.BAD_DIMS, `a delta tensor has 1 or 2 dims, got ${ndim}`, name)
  }
  const dims: number[] = []
  for (let i = 0; i < ndim; i++) {
    dims.push(r.u32(`dim ${i}`))
  }
  const n = deltaElementCount(dims, name)
  const { rows, cols } = deltaRows(dims)
  const kind = kindFor(codec, ndim)
  let tensor: DeltaTensor
  if (kind === 'dense') {
    const values = r.f32s(n, 'values')
    checkFinite(values, 'value', name)
    tensor = { kind, name, dims, values }
  } else if (kind === 'int8') {
    r.need(4 * rows + n, 'int8 scales and values')
    const scales = r.f32s(rows, 'scales')
    const q = r.i8s(n, 'int8 values')
    tensor = { kind, name, dims, scales, q }
    checkInt8(tensor)
  } else if (kind === 'sparse') {
    const k = r.u32('k')
    if (k > n) {
      fail(E.K_RANGE, `k ${k} exceeds the ${n} elements`, name)
    }
    const scale = r.f32('scale')
    // each entry takes at least one varint byte and one value byte: bound k before allocating
    r.need(2 * k, `${k} sparse entries`)
    const indices = new Uint32Array(k)
    const bytes = r.bytes
    let prev = -1
    for (let i = 0; i < k; i++) {
      // one-byte gaps (below 128: the common case at 1% density) read inline
      const b = r.pos < bytes.length ? bytes[r.pos] : 0x80
      let gap: number
      if (b < 0x80) {
        gap = b
        r.pos++
      } else {
        gap = r.varint('an index gap')
      }
      const idx = prev + 1 + gap
      if (idx >= n) {
        fail(E.INDEX_ORDER, `index ${i} (${idx}) is not below n = ${n}`, name)
      }
      indices[i] = idx
      prev = idx
    }
    const q = r.i8s(k, 'sparse values')
    tensor = { kind, name, dims, scale, indices, q }
    checkSparse(tensor, n)
  } else {
    const rank = r.u16('rank')
    checkRank(rank, rows, cols, name)
    r.need(4 * rank * (rows + cols), 'lowrank factors')
    const us = r.f32s(rows * rank, 'us')
    const vt = r.f32s(rank * cols, 'vt')
    checkFinite(us, 'us', name)
    checkFinite(vt, 'vt', name)
    tensor = { kind, name, dims, rank, us, vt }
  }
  return { tensor, nameBytes }
}

/** Decodes and fully checks a canonical body (the decompressed payload). */
export function decodeDeltaBody (body: Uint8Array, options: Pick<DecodeDeltaOptions, 'codec'> = {}): Delta {
  if (body.length > MAX_DELTA_BODY) {
    fail(E.TOO_LARGE, `body of ${body.length} bytes exceeds ${MAX_DELTA_BODY}`)
  }
  const r = new BodyReader(body)
  const magic = r.take(4, 'magic')
  if (compareBytes(magic, DELTA_MAGIC) !== 0) {
    fail(E.BAD_MAGIC, 'body does not start with "BLYD"')
  }
  const version = r.u8('version')
  if (version !== DELTA_FORMAT_VERSION) {
    fail(E.BAD_VERSION, `format version ${version}, this code reads ${DELTA_FORMAT_VERSION}`)
  }
  const codecByte = r.u8('codec')
  if (codecByte < 1 || codecByte > DELTA_CODECS.length) {
    fail(E.UNKNOWN_CODEC, `codec byte ${codecByte}`)
  }
  const codec = DELTA_CODECS[codecByte - 1]
  if (options.codec != null && options.codec !== codec) {
    fail(E.CODEC_MISMATCH, `body codec ${codec}, the block names ${options.codec}`)
  }
  const count = r.u32('tensor count')
  if (count < 1 || count > MAX_DELTA_TENSORS) {
    fail(E.BAD_COUNT, `a delta has 1 to ${MAX_DELTA_TENSORS} tensors, got ${count}`)
  }
  const entries: BodyEntry[] = []
  for (let i = 0; i < count; i++) {
    const start = r.pos
    const { tensor, nameBytes } = readTensor(r, codec, i)
    if (i > 0 && compareBytes(entries[i - 1].name, nameBytes) >= 0) {
      fail(E.NAME_ORDER, `tensor ${i} is not after tensor ${i - 1} in name order (unsorted or duplicate)`, tensor.name)
    }
    entries.push({ t: tensor, name: nameBytes, bodyLength: r.pos - start - 3 - nameBytes.length - 4 * tensor.dims.length })
  }
  r.tensor = undefined
  if (r.remaining !== 0) {
    fail(E.TRAILING_BYTES, `${r.remaining} bytes after the last tensor`)
  }
  // every field was checked as it was read; writing the delta back must give the same bytes.
  // The comparison runs piece by piece against the body: no second copy of a large body.
  let pos = 0
  let culprit: string | undefined
  const compare: ByteSink = {
    put: chunk => {
      if (chunk.length > body.length - pos || compareBytes(chunk, body.subarray(pos, pos + chunk.length)) !== 0) {
        fail(E.NOT_CANONICAL, 'body does not re-encode to the same bytes', culprit)
      }
      pos += chunk.length
    }
  }
  compare.put(writeHeader(codec, count))
  for (const e of entries) {
    culprit = e.t.name
    writeEntry(compare, e)
  }
  if (pos !== body.length) {
    fail(E.NOT_CANONICAL, 'body length differs from its re-encoding')
  }
  return { codec, tensors: entries.map(e => e.t) }
}

/** zstd (level DELTA_ZSTD_LEVEL) of a body: the block payload. */
export function compressDeltaBody (body: Uint8Array): Uint8Array {
  return zstdCompressSync(body, { params: { [zlibConstants.ZSTD_c_compressionLevel]: DELTA_ZSTD_LEVEL } })
}

/**
 * The body inside a payload: exactly one zstd frame (no dictionary, no
 * byte after it) that decompresses to at most `maxBodyBytes` bytes.
 */
export function decompressDeltaPayload (payload: Uint8Array, maxBodyBytes: number = MAX_DELTA_BODY): Uint8Array {
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1 || maxBodyBytes > MAX_DELTA_BODY) {
    throw new RangeError(`maxBodyBytes must be an integer in [1, ${MAX_DELTA_BODY}], got ${maxBodyBytes}`)
  }
  let frame
  try {
    frame = readZstdFrame(payload)
  } catch (err) {
    if (err instanceof ZstdFrameError) {
      throw new DeltaFormatError(E.ZSTD, `payload: ${err.message}`, {}, { cause: err })
    }
    throw err
  }
  if (frame.length !== payload.length) {
    fail(E.ZSTD, `payload has ${payload.length - frame.length} bytes after its zstd frame`)
  }
  if (frame.hasDictionaryId) {
    fail(E.ZSTD, 'payload frame names a zstd dictionary')
  }
  if (frame.contentSize != null && frame.contentSize > maxBodyBytes) {
    fail(E.TOO_LARGE, `payload declares a ${frame.contentSize}-byte body, the bound is ${maxBodyBytes}`)
  }
  try {
    const body = zstdDecompressSync(payload, {
      maxOutputLength: maxBodyBytes,
      // one output chunk when the frame declares its size (no concatenation of many small chunks), capped against a lying header
      chunkSize: Math.max(64 * 1024, Math.min(frame.contentSize ?? 0, DECOMPRESS_CHUNK_MAX)),
      params: { [zlibConstants.ZSTD_d_windowLogMax]: DELTA_ZSTD_WINDOW_LOG_MAX }
    })
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
  } catch (err: any) {
    if (err?.code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DeltaFormatError(E.TOO_LARGE, `payload decompresses past the ${maxBodyBytes}-byte bound`, {}, { cause: err })
    }
    throw new DeltaFormatError(E.ZSTD, `zstd: ${String(err?.message ?? err)}`, {}, { cause: err })
  }
}

/** The block payload of `delta`: zstd around its canonical body. */
export function encodeDeltaPayload (delta: Delta): Uint8Array {
  return compressDeltaBody(encodeDeltaBody(delta))
}

/** Decompresses, decodes and checks a Delta block payload. */
export function decodeDeltaPayload (payload: Uint8Array, options: DecodeDeltaOptions = {}): DecodedDeltaPayload {
  const body = decompressDeltaPayload(payload, options.maxBodyBytes)
  return { delta: decodeDeltaBody(body, options), body }
}
