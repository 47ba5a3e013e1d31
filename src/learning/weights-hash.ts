/**
 * The weights hash of a version: sha-256 over every unit's float32 weights,
 * so nodes can compare the weights they computed bit for bit.
 *
 * H = sha256(utf8("bly/weights/v1") || units), units strictly ascending,
 * each: u32 unit, u32 tensorCount, then its tensors with names ascending by
 * UTF-8 bytes, each: u16 nameLen, name, u8 ndim, ndim x u32 dims, n x f32
 * (row-major).
 *
 * Little-endian; the f32 bit patterns are hashed as they are (+0 and -0 differ).
 */
import { createHash } from 'node:crypto'
import { elementCount } from '../model/safetensors/dtypes.ts'
import { WeightDeltaError, WeightDeltaErrorCode } from './delta-errors.ts'
import type { F32Tensor, F32Tensors } from './f32-tensors.ts'
import type { Hash } from 'node:crypto'

export const WEIGHTS_HASH_DOMAIN = 'bly/weights/v1'

const utf8 = new TextEncoder()

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** Feeds units in ascending order, then digest(). */
export class WeightsHasher {
  private readonly hash: Hash
  private lastUnit: number
  private done: boolean

  constructor () {
    this.hash = createHash('sha256')
    this.hash.update(utf8.encode(WEIGHTS_HASH_DOMAIN))
    this.lastUnit = -1
    this.done = false
  }

  /** Adds one unit's tensors (any map order; hashed in name order). */
  addUnit (unit: number, tensors: F32Tensors): this {
    if (this.done) {
      throw new Error('WeightsHasher: digest() was already called')
    }
    if (!Number.isSafeInteger(unit) || unit <= this.lastUnit || unit > 0xffffffff) {
      throw new RangeError(`units must be added in strictly ascending order: ${unit} after ${this.lastUnit}`)
    }
    this.lastUnit = unit
    const entries = [...tensors].map(([name, t]) => ({ name, bytes: utf8.encode(name), t }))
    entries.sort((a, b) => compareBytes(a.bytes, b.bytes))
    const head = new DataView(new ArrayBuffer(8))
    head.setUint32(0, unit, true)
    head.setUint32(4, entries.length, true)
    this.hash.update(new Uint8Array(head.buffer))
    for (const { name, bytes, t } of entries) {
      this.tensor(name, bytes, t)
    }
    return this
  }

  private tensor (name: string, nameBytes: Uint8Array, t: F32Tensor): void {
    if (nameBytes.length > 0xffff || t.shape.length > 0xff) {
      throw new RangeError(`tensor ${name}: name or rank too large to hash`)
    }
    if (t.values.length !== elementCount(t.shape)) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `${t.values.length} values for shape [${t.shape.join(', ')}]`, { tensor: name })
    }
    const head = new DataView(new ArrayBuffer(2 + nameBytes.length + 1 + 4 * t.shape.length))
    head.setUint16(0, nameBytes.length, true)
    new Uint8Array(head.buffer).set(nameBytes, 2)
    head.setUint8(2 + nameBytes.length, t.shape.length)
    t.shape.forEach((d, i) => { head.setUint32(3 + nameBytes.length + 4 * i, d, true) })
    this.hash.update(new Uint8Array(head.buffer))
    this.hash.update(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength))
  }

  digest (): Uint8Array {
    this.done = true
    return new Uint8Array(this.hash.digest())
  }
}

/** The weights hash of units given as (unit number, tensors), units ascending. */
export function weightsHash (units: Iterable<{ unit: number, tensors: F32Tensors }>): Uint8Array {
  const h = new WeightsHasher()
  for (const u of units) {
    h.addUnit(u.unit, u.tensors)
  }
  return h.digest()
}
