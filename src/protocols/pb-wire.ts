/**
 * Minimal protobuf wire-format primitives for hand-rolled canonical codecs:
 * a growable writer and a bounds-checked reader. Varints are always written
 * minimally; readers reject over-long (> 10 byte) and overflowing varints.
 * Canonicality beyond that (field order, defaults) is the codec's job.
 */

export const WireType = {
  Varint: 0,
  LengthDelimited: 2
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type WireType = typeof WireType[keyof typeof WireType]

const UINT64_MAX = (1n << 64n) - 1n

/** Thrown by the reader on malformed input; codecs wrap it in their own error. */
export class WireError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'WireError'
  }
}

export class PbWriter {
  private buf: Uint8Array
  private pos: number

  constructor (initialSize = 256) {
    this.buf = new Uint8Array(initialSize)
    this.pos = 0
  }

  private reserve (n: number): void {
    if (this.pos + n <= this.buf.length) {
      return
    }
    let size = this.buf.length * 2
    while (size < this.pos + n) {
      size *= 2
    }
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  /** unsigned varint of a safe non-negative integer */
  uint32 (value: number): this {
    if (!Number.isSafeInteger(value) || value < 0 || value > 0xffffffff) {
      throw new WireError(`uint32 out of range: ${value}`)
    }
    this.reserve(5)
    let v = value
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
    return this
  }

  /** unsigned varint of a uint64 */
  uint64 (value: bigint): this {
    if (value < 0n || value > UINT64_MAX) {
      throw new WireError(`uint64 out of range: ${value}`)
    }
    this.reserve(10)
    let v = value
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80
      v >>= 7n
    }
    this.buf[this.pos++] = Number(v)
    return this
  }

  /** zig-zag varint of an int64 */
  sint64 (value: bigint): this {
    if (value < -(1n << 63n) || value >= (1n << 63n)) {
      throw new WireError(`int64 out of range: ${value}`)
    }
    return this.uint64(value >= 0n ? value << 1n : ((-value) << 1n) - 1n)
  }

  tag (field: number, wireType: WireType): this {
    return this.uint32(field * 8 + wireType)
  }

  bytes (value: Uint8Array): this {
    this.uint32(value.length)
    this.reserve(value.length)
    this.buf.set(value, this.pos)
    this.pos += value.length
    return this
  }

  finish (): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

export class PbReader {
  private readonly buf: Uint8Array
  pos: number
  readonly end: number

  constructor (buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf
    this.pos = start
    this.end = end
  }

  done (): boolean {
    return this.pos >= this.end
  }

  uint64 (): bigint {
    let result = 0n
    let shift = 0n
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) {
        throw new WireError('truncated varint')
      }
      const b = this.buf[this.pos++]
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) {
        if (result > UINT64_MAX) {
          throw new WireError('varint overflows 64 bits')
        }
        return result
      }
      shift += 7n
    }
    throw new WireError('varint longer than 10 bytes')
  }

  uint32 (): number {
    // fast path for the common one/two byte case
    let result = 0
    let mul = 1
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) {
        throw new WireError('truncated varint')
      }
      const b = this.buf[this.pos++]
      result += (b & 0x7f) * mul
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) {
          throw new WireError('varint overflows 32 bits')
        }
        return result
      }
      mul *= 128
    }
    throw new WireError('varint longer than 5 bytes for a 32-bit field')
  }

  sint64 (): bigint {
    const z = this.uint64()
    return (z & 1n) === 0n ? z >> 1n : -((z + 1n) >> 1n)
  }

  /** a length-delimited value, as a view into the input */
  bytes (): Uint8Array {
    const len = this.uint32()
    if (len > this.end - this.pos) {
      throw new WireError('length-delimited field runs past the end')
    }
    const out = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return out
  }

  /** returns [fieldNumber, wireType] */
  tag (): [number, number] {
    const t = this.uint32()
    return [Math.floor(t / 8), t & 7]
  }
}
