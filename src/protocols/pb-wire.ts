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

export function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false
    }
  }
  return true
}

/**
 * The signed envelope shared by block headers and node records:
 * `{ bytes body = 1; bytes signature = 2; }`, both present, in that order,
 * nothing else, the signature exactly `signatureLength` bytes. `what` names
 * the body in error messages. Errors are WireErrors for the codec to wrap.
 */
export function encodeSignedEnvelope (body: Uint8Array, signature: Uint8Array, signatureLength: number, what: string): Uint8Array {
  if (body.length === 0) {
    throw new WireError(`empty ${what}`)
  }
  if (signature.length !== signatureLength) {
    throw new WireError(`signature is ${signature.length} bytes, expected ${signatureLength}`)
  }
  const w = new PbWriter(body.length + signatureLength + 16)
  w.tag(1, WireType.LengthDelimited).bytes(body)
  w.tag(2, WireType.LengthDelimited).bytes(signature)
  return w.finish()
}

/** Strictly decode a signed envelope: canonical (re-encoding gives the same bytes), both fields present. */
export function decodeSignedEnvelope (bytes: Uint8Array, signatureLength: number, what: string): { body: Uint8Array, signature: Uint8Array } {
  let body: Uint8Array | undefined
  let signature: Uint8Array | undefined
  const r = new PbReader(bytes)
  while (!r.done()) {
    const [field, wt] = r.tag()
    if (field !== 1 && field !== 2) {
      throw new WireError(`unknown envelope field ${field}`)
    }
    if (wt !== WireType.LengthDelimited) {
      throw new WireError(`field ${field} has wire type ${wt}, expected ${WireType.LengthDelimited}`)
    }
    if (field === 1) {
      body = r.bytes()
    } else {
      signature = r.bytes()
    }
  }
  if (body == null || signature == null) {
    throw new WireError(`signed ${what} lacks the ${what} or the signature`)
  }
  if (!equalBytes(encodeSignedEnvelope(body, signature, signatureLength, what), bytes)) {
    throw new WireError(`signed ${what} encoding is not canonical`)
  }
  return { body, signature }
}

/** A signed envelope whose body is named `key` (`header`, `record`) in its message type. */
export type SignedEnvelopeMessage<Key extends string> = Record<Key, Uint8Array> & { signature: Uint8Array }

/**
 * The encode/decode pair of one kind of signed envelope: its body's name,
 * its signature length, and the codec's own error for what the envelope
 * rejects (`encode` passes the message on; `decode` says "malformed signed
 * <key>: ...").
 */
export function signedEnvelopeCodec<Key extends string> (key: Key, signatureLength: number, toError: (message: string, cause: unknown) => Error): {
  encode(msg: SignedEnvelopeMessage<Key>): Uint8Array
  decode(bytes: Uint8Array): SignedEnvelopeMessage<Key>
} {
  return {
    encode (msg) {
      try {
        return encodeSignedEnvelope(msg[key], msg.signature, signatureLength, key)
      } catch (err) {
        throw toError((err as Error).message, err)
      }
    },
    decode (bytes) {
      try {
        const { body, signature } = decodeSignedEnvelope(bytes, signatureLength, key)
        return { [key]: body, signature } as SignedEnvelopeMessage<Key>
      } catch (err) {
        throw toError(`malformed signed ${key}: ${(err as Error).message}`, err)
      }
    }
  }
}
