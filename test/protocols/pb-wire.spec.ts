import { expect } from 'aegir/chai'
import { PbReader, PbWriter, WireError, WireType, decodeSignedEnvelope, encodeSignedEnvelope, equalBytes } from '../../src/protocols/pb-wire.ts'

const UINT64_MAX = (1n << 64n) - 1n

function bytes (...b: number[]): Uint8Array {
  return Uint8Array.from(b)
}

function expectWireError (fn: () => unknown, pattern: RegExp): void {
  expect(fn).to.throw(WireError, pattern)
}

/** deterministic pseudo-random bigints in [0, 2^64) */
function * randomU64 (count: number): Generator<bigint> {
  let x = 0x9e3779b97f4a7c15n
  for (let i = 0; i < count; i++) {
    x ^= x << 13n & UINT64_MAX
    x ^= x >> 7n
    x ^= x << 17n & UINT64_MAX
    yield x >> BigInt(i % 64)
  }
}

describe('protocols/pb-wire primitives', () => {
  describe('varints', () => {
    it('writes uint32 varints minimally (golden bytes) and reads them back', () => {
      const golden: Array<[number, number[]]> = [
        [0, [0x00]],
        [1, [0x01]],
        [127, [0x7f]],
        [128, [0x80, 0x01]],
        [300, [0xac, 0x02]],
        [16_383, [0xff, 0x7f]],
        [16_384, [0x80, 0x80, 0x01]],
        [0xffffffff, [0xff, 0xff, 0xff, 0xff, 0x0f]]
      ]
      for (const [value, encoded] of golden) {
        const out = new PbWriter(1).uint32(value).finish()
        expect([...out], String(value)).to.deep.equal(encoded)
        const r = new PbReader(out)
        expect(r.uint32()).to.equal(value)
        expect(r.done()).to.equal(true)
        expect(new PbReader(out).uint64()).to.equal(BigInt(value))
      }
    })

    it('round-trips uint64 and zig-zag sint64 over their whole range', () => {
      const max = new PbWriter().uint64(UINT64_MAX).finish()
      expect([...max]).to.deep.equal([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
      const zigzag: Array<[bigint, bigint]> = [[0n, 0n], [-1n, 1n], [1n, 2n], [-2n, 3n], [(1n << 63n) - 1n, UINT64_MAX - 1n], [-(1n << 63n), UINT64_MAX]]
      for (const [signed, unsigned] of zigzag) {
        const out = new PbWriter().sint64(signed).finish()
        expect(new PbReader(out).uint64(), String(signed)).to.equal(unsigned)
        expect(new PbReader(out).sint64()).to.equal(signed)
      }
      for (const v of randomU64(2000)) {
        const w = new PbWriter(4).uint64(v).sint64(v >> 1n).sint64(-(v >> 1n) - 1n)
        const r = new PbReader(w.finish())
        expect(r.uint64()).to.equal(v)
        expect(r.sint64()).to.equal(v >> 1n)
        expect(r.sint64()).to.equal(-(v >> 1n) - 1n)
        expect(r.done()).to.equal(true)
      }
    })

    it('the writer refuses values its type cannot hold', () => {
      for (const bad of [-1, 1.5, 0x1_0000_0000, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
        expectWireError(() => new PbWriter().uint32(bad), /uint32 out of range/)
      }
      expectWireError(() => new PbWriter().uint64(-1n), /uint64 out of range/)
      expectWireError(() => new PbWriter().uint64(UINT64_MAX + 1n), /uint64 out of range/)
      expectWireError(() => new PbWriter().sint64(1n << 63n), /int64 out of range/)
      expectWireError(() => new PbWriter().sint64(-(1n << 63n) - 1n), /int64 out of range/)
    })

    it('the reader refuses truncated, over-long and overflowing varints', () => {
      expectWireError(() => new PbReader(bytes()).uint32(), /truncated varint/)
      expectWireError(() => new PbReader(bytes(0x80)).uint32(), /truncated varint/)
      expectWireError(() => new PbReader(bytes(0xff, 0xff)).uint64(), /truncated varint/)
      expectWireError(() => new PbReader(bytes(0xff, 0xff, 0xff, 0xff, 0x1f)).uint32(), /overflows 32 bits/)
      expectWireError(() => new PbReader(bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x00)).uint32(), /longer than 5 bytes/)
      expectWireError(() => new PbReader(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02)).uint64(), /overflows 64 bits/)
      expectWireError(() => new PbReader(new Uint8Array(11).fill(0x80)).uint64(), /longer than 10 bytes/)
    })

    it('the reader takes a non-minimal varint at its value: canonical form is the codecs\' check (they re-encode)', () => {
      expect(new PbReader(bytes(0x80, 0x00)).uint32()).to.equal(0)
      expect(new PbReader(bytes(0x81, 0x80, 0x00)).uint64()).to.equal(1n)
    })
  })

  describe('tags and length-delimited values', () => {
    it('writes a tag as field * 8 + wire type and reads it back', () => {
      expect([...new PbWriter().tag(1, WireType.Varint).finish()]).to.deep.equal([0x08])
      expect([...new PbWriter().tag(2, WireType.LengthDelimited).finish()]).to.deep.equal([0x12])
      expect([...new PbWriter().tag(16, WireType.LengthDelimited).finish()]).to.deep.equal([0x82, 0x01])
      expect(new PbReader(new PbWriter().tag(99, WireType.LengthDelimited).finish()).tag()).to.deep.equal([99, WireType.LengthDelimited])
    })

    it('prefixes bytes with their length, grows past its first size, and reads views into the input', () => {
      const payload = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff)
      const out = new PbWriter(1).tag(3, WireType.LengthDelimited).bytes(payload).tag(4, WireType.LengthDelimited).bytes(new Uint8Array(0)).finish()
      expect([...out.subarray(0, 3)]).to.deep.equal([0x1a, 0xe8, 0x07])
      const r = new PbReader(out)
      expect(r.tag()).to.deep.equal([3, WireType.LengthDelimited])
      const read = r.bytes()
      expect(equalBytes(read, payload)).to.equal(true)
      expect(read.buffer).to.equal(out.buffer)
      expect(r.tag()).to.deep.equal([4, WireType.LengthDelimited])
      expect(r.bytes()).to.have.length(0)
      expect(r.done()).to.equal(true)
    })

    it('refuses a length that runs past the end, also of a window into a larger buffer', () => {
      expectWireError(() => new PbReader(bytes(0x05, 1, 2, 3)).bytes(), /runs past the end/)
      const buf = bytes(0x02, 7, 8, 9)
      expectWireError(() => new PbReader(buf, 0, 2).bytes(), /runs past the end/)
      expect([...new PbReader(buf, 0, 3).bytes()]).to.deep.equal([7, 8])
    })

    it('equalBytes compares length and every byte', () => {
      expect(equalBytes(bytes(), bytes())).to.equal(true)
      expect(equalBytes(bytes(1, 2), bytes(1, 2))).to.equal(true)
      expect(equalBytes(bytes(1, 2), bytes(1, 3))).to.equal(false)
      expect(equalBytes(bytes(1, 2), bytes(1, 2, 0))).to.equal(false)
    })
  })

  describe('signed envelope', () => {
    const body = bytes(1, 2, 3)
    const sig = new Uint8Array(64).fill(0xaa)

    it('is { body = 1; signature = 2 }, both length-delimited, in that order (golden bytes)', () => {
      const env = encodeSignedEnvelope(body, sig, 64, 'header')
      expect([...env]).to.deep.equal([0x0a, 3, 1, 2, 3, 0x12, 64, ...sig])
      const back = decodeSignedEnvelope(env, 64, 'header')
      expect([...back.body]).to.deep.equal([1, 2, 3])
      expect(equalBytes(back.signature, sig)).to.equal(true)
    })

    it('refuses to encode an empty body or a signature of the wrong length', () => {
      expectWireError(() => encodeSignedEnvelope(bytes(), sig, 64, 'record'), /empty record/)
      expectWireError(() => encodeSignedEnvelope(body, sig.subarray(1), 64, 'record'), /signature is 63 bytes, expected 64/)
    })

    it('decodes strictly: every other arrangement of the same parts is refused', () => {
      const part = (field: number, value: Uint8Array): number[] => [...new PbWriter().tag(field, WireType.LengthDelimited).bytes(value).finish()]
      const bad: Array<[string, number[], RegExp]> = [
        ['signature first', [...part(2, sig), ...part(1, body)], /not canonical/],
        ['body twice', [...part(1, body), ...part(1, body), ...part(2, sig)], /not canonical/],
        ['no signature', part(1, body), /lacks/],
        ['no body', part(2, sig), /lacks/],
        ['unknown field', [...part(1, body), ...part(2, sig), ...part(3, body)], /unknown envelope field 3/],
        ['varint body', [0x08, 0x01, ...part(2, sig)], /wire type 0/],
        ['trailing byte', [...part(1, body), ...part(2, sig), 0x00], /unknown envelope field 0|truncated/],
        ['short signature', [...part(1, body), ...part(2, sig.subarray(1))], /63 bytes/],
        ['non-minimal length', [0x0a, 0x83, 0x00, 1, 2, 3, ...part(2, sig)], /not canonical/]
      ]
      for (const [what, encoded, pattern] of bad) {
        expect(() => decodeSignedEnvelope(Uint8Array.from(encoded), 64, 'header'), what).to.throw(WireError, pattern)
      }
    })
  })
})
