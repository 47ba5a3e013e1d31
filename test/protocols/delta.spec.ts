import { constants as zlibConstants, zstdCompressSync } from 'node:zlib'
import { expect } from 'aegir/chai'
import { DeltaFormatError, DeltaFormatErrorCode as E } from '../../src/protocols/delta-errors.ts'
import {
  DELTA_CODECS, MAX_DELTA_ELEMENTS, MAX_DELTA_TENSORS, compressDeltaBody, decodeDeltaBody, decodeDeltaPayload,
  decompressDeltaPayload, encodeDeltaBody, encodeDeltaPayload
} from '../../src/protocols/delta.ts'
import { BodyBuilder, sampleDelta } from './delta-helpers.ts'
import type { Delta, DeltaTensor } from '../../src/protocols/delta.ts'

function expectCode (fn: () => unknown, code: string): void {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, `expected ${code}`).to.be.instanceOf(DeltaFormatError)
  expect((err as DeltaFormatError).code).to.equal(code)
}

function plain (t: DeltaTensor): unknown {
  const arrays = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>, x => Object.is(x, -0) ? '-0' : x) : v]))
  return arrays
}

function expectSameDelta (a: Delta, b: Delta): void {
  expect(a.codec).to.equal(b.codec)
  const sorted = (d: Delta): DeltaTensor[] => [...d.tensors].sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)))
  expect(sorted(a).map(plain)).to.deep.equal(sorted(b).map(plain))
}

describe('protocols/delta', () => {
  describe('round trips', () => {
    for (const codec of DELTA_CODECS) {
      it(`${codec}: decode(encode(x)) = x and encode(decode(body)) = body, for 1-D, 2-D, odd and one-element tensors`, () => {
        for (const seed of [1, 2, 3]) {
          const delta = sampleDelta(codec, seed)
          const body = encodeDeltaBody(delta)
          const back = decodeDeltaBody(body, { codec })
          expectSameDelta(back, delta)
          expect(encodeDeltaBody(back)).to.deep.equal(body)
          const payload = encodeDeltaPayload(delta)
          const decoded = decodeDeltaPayload(payload, { codec })
          expect(decoded.body).to.deep.equal(body)
          expectSameDelta(decoded.delta, delta)
        }
      })

      it(`${codec}: zero tensors round-trip`, () => {
        const delta = sampleDelta(codec, 9, { zero: true })
        const body = encodeDeltaBody(delta)
        expectSameDelta(decodeDeltaBody(body), delta)
      })
    }

    it('writes tensors in UTF-8 byte order whatever the input order', () => {
      const t = (name: string): DeltaTensor => ({ kind: 'dense', name, dims: [1], values: Float32Array.of(1) })
      // 'é' (0xc3 0xa9) sorts after 'z' by bytes, and 'Z' before 'a'
      const a = encodeDeltaBody({ codec: 'f32', tensors: [t('é'), t('z'), t('a'), t('Z')] })
      const b = encodeDeltaBody({ codec: 'f32', tensors: [t('a'), t('Z'), t('z'), t('é')] })
      expect(a).to.deep.equal(b)
      expect(decodeDeltaBody(a).tensors.map(x => x.name)).to.deep.equal(['Z', 'a', 'z', 'é'])
    })

    it('keeps -0, subnormals and the largest float32 in f32 values', () => {
      const values = Float32Array.of(-0, 1e-45, -1e-40, 3.4028234663852886e38, -3.4028234663852886e38)
      const body = encodeDeltaBody({ codec: 'f32', tensors: [{ kind: 'dense', name: 'w', dims: [5], values }] })
      const back = decodeDeltaBody(body).tensors[0] as Extract<DeltaTensor, { kind: 'dense' }>
      expect(new Uint8Array(back.values.buffer, back.values.byteOffset, 20)).to.deep.equal(new Uint8Array(values.buffer))
    })

    it('sparse: indices spread over 2^29 elements use multi-byte varints and decode without allocating n', () => {
      const n = 2 ** 29
      const indices = Uint32Array.of(0, 127, 128, 128 + 16384 + 1, n - 1)
      const delta: Delta = { codec: 'sparse', tensors: [{ kind: 'sparse', name: 'big', dims: [2 ** 15, 2 ** 14], scale: Math.fround(0.5), indices, q: Int8Array.of(127, -1, 2, -3, 4) }] }
      const body = encodeDeltaBody(delta)
      // header 10 + name 2+3 + ndim 1 + dims 8 + k 4 + scale 4 + gaps (1 + 1 + 1 + 3 + 5) + 5 values
      expect(body.length).to.equal(10 + 5 + 1 + 8 + 8 + 11 + 5)
      expectSameDelta(decodeDeltaBody(body), delta)
    })
  })

  describe('payload', () => {
    it('is one zstd frame (level 3) whose body decodes; the codec must match the header', () => {
      const delta = sampleDelta('int8', 4)
      const payload = encodeDeltaPayload(delta)
      expect(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true)).to.equal(0xfd2fb528)
      expect(decompressDeltaPayload(payload)).to.deep.equal(encodeDeltaBody(delta))
      expectCode(() => decodeDeltaPayload(payload, { codec: 'sparse' }), E.CODEC_MISMATCH)
    })

    it('accepts a frame from another zstd level or without a content size (the body is what is canonical)', () => {
      const body = encodeDeltaBody(sampleDelta('f32', 5))
      const level19 = zstdCompressSync(body, { params: { [zlibConstants.ZSTD_c_compressionLevel]: 19, [zlibConstants.ZSTD_c_checksumFlag]: 1 } })
      const noSize = zstdCompressSync(body, { params: { [zlibConstants.ZSTD_c_contentSizeFlag]: 0 } })
      expect(decodeDeltaPayload(level19).body).to.deep.equal(body)
      expect(decodeDeltaPayload(noSize).body).to.deep.equal(body)
    })
  })

  describe('rejects non-canonical input, one code per kind', () => {
    const good = (): Uint8Array => encodeDeltaBody(sampleDelta('f32', 6))
    const f32Tensor = (name = 'w'): BodyBuilder => new BodyBuilder().header(1, 1).tensor(name, [2]).f32s([1, 2])

    it('ERR_DELTA_ZSTD: not zstd, truncated frame, bytes after the frame, a dictionary id, a corrupt block', () => {
      const payload = compressDeltaBody(good())
      expectCode(() => decompressDeltaPayload(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), E.ZSTD)
      expectCode(() => decompressDeltaPayload(new Uint8Array(0)), E.ZSTD)
      expectCode(() => decompressDeltaPayload(payload.subarray(0, payload.length - 1)), E.ZSTD)
      expectCode(() => decompressDeltaPayload(Uint8Array.from([...payload, 0])), E.ZSTD)
      expectCode(() => decompressDeltaPayload(Uint8Array.from([...payload, ...payload])), E.ZSTD)
      // a Dictionary_ID field (flag 1, one byte) inserted after the frame header descriptor
      const fhd = payload[4]
      expect(fhd & 0x20, 'single-segment frame').to.equal(0x20)
      const withDict = Uint8Array.from([...payload.subarray(0, 4), fhd | 0x01, 7, ...payload.subarray(5)])
      expectCode(() => decompressDeltaPayload(withDict), E.ZSTD)
      // a compressed block whose content is garbage: the walker accepts the structure, zstd refuses it
      const zeros = compressDeltaBody(encodeDeltaBody(sampleDelta('f32', 6, { zero: true })))
      const headerEnd = 4 + 1 + 2 // magic, descriptor, 2-byte content size (single segment)
      expect(zeros[4] >>> 6, 'a 2-byte content size').to.equal(1)
      expect((zeros[headerEnd] >>> 1) & 3, 'a compressed block').to.equal(2)
      const corrupt = Uint8Array.from(zeros)
      for (let i = headerEnd + 3; i < corrupt.length; i++) {
        corrupt[i] ^= 0x5a
      }
      expectCode(() => decompressDeltaPayload(corrupt), E.ZSTD)
    })

    it('ERR_DELTA_TOO_LARGE: a declared or actual body past the bound', () => {
      const body = good()
      expectCode(() => decompressDeltaPayload(compressDeltaBody(body), body.length - 1), E.TOO_LARGE)
      const noSize = zstdCompressSync(body, { params: { [zlibConstants.ZSTD_c_contentSizeFlag]: 0 } })
      expectCode(() => decompressDeltaPayload(noSize, body.length - 1), E.TOO_LARGE)
      expect(decompressDeltaPayload(noSize, body.length)).to.deep.equal(body)
    })

    it('ERR_DELTA_BAD_MAGIC, ERR_DELTA_BAD_VERSION, ERR_DELTA_UNKNOWN_CODEC, ERR_DELTA_CODEC_MISMATCH', () => {
      const b = good()
      expectCode(() => decodeDeltaBody(Uint8Array.from([0x42, 0x4c, 0x59, 0x45, ...b.subarray(4)])), E.BAD_MAGIC)
      expectCode(() => decodeDeltaBody(Uint8Array.from([...b.subarray(0, 4), 2, ...b.subarray(5)])), E.BAD_VERSION)
      expectCode(() => decodeDeltaBody(Uint8Array.from([...b.subarray(0, 4), 0, ...b.subarray(5)])), E.BAD_VERSION)
      expectCode(() => decodeDeltaBody(Uint8Array.from([...b.subarray(0, 5), 0, ...b.subarray(6)])), E.UNKNOWN_CODEC)
      expectCode(() => decodeDeltaBody(Uint8Array.from([...b.subarray(0, 5), 5, ...b.subarray(6)])), E.UNKNOWN_CODEC)
      expectCode(() => decodeDeltaBody(b, { codec: 'int8' }), E.CODEC_MISMATCH)
    })

    it('ERR_DELTA_TRUNCATED and ERR_DELTA_TRAILING_BYTES', () => {
      const b = good()
      for (const cut of [0, 3, 9, 12, b.length - 1]) {
        expectCode(() => decodeDeltaBody(b.subarray(0, cut)), E.TRUNCATED)
      }
      expectCode(() => decodeDeltaBody(Uint8Array.from([...b, 0])), E.TRAILING_BYTES)
    })

    it('ERR_DELTA_BAD_COUNT: no tensor, more than the bound', () => {
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 0).bytes()), E.BAD_COUNT)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, MAX_DELTA_TENSORS + 1).bytes()), E.BAD_COUNT)
      // a count larger than the tensors present runs out of body
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 2).tensor('w', [2]).f32s([1, 2]).bytes()), E.TRUNCATED)
      expectCode(() => encodeDeltaBody({ codec: 'f32', tensors: [] }), E.BAD_COUNT)
    })

    it('ERR_DELTA_BAD_NAME: empty, invalid UTF-8, a lone surrogate given to the encoder', () => {
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor('', [1]).f32s([1]).bytes()), E.BAD_NAME)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor([0xff, 0x41], [1]).f32s([1]).bytes()), E.BAD_NAME)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor([0xc0, 0x80], [1]).f32s([1]).bytes()), E.BAD_NAME)
      expectCode(() => encodeDeltaBody({ codec: 'f32', tensors: [{ kind: 'dense', name: 'a\ud800', dims: [1], values: Float32Array.of(1) }] }), E.BAD_NAME)
      // a byte-order mark is kept as part of the name, not dropped
      const bom = new BodyBuilder().header(1, 1).tensor([0xef, 0xbb, 0xbf, 0x41], [1]).f32s([1]).bytes()
      expect(decodeDeltaBody(bom).tensors[0].name).to.equal('\ufeffA')
    })

    it('ERR_DELTA_NAME_ORDER: unsorted and duplicate names', () => {
      const two = (a: string, b: string): Uint8Array => new BodyBuilder().header(1, 2).tensor(a, [1]).f32s([1]).tensor(b, [1]).f32s([2]).bytes()
      expect(decodeDeltaBody(two('a', 'b')).tensors).to.have.length(2)
      expectCode(() => decodeDeltaBody(two('b', 'a')), E.NAME_ORDER)
      expectCode(() => decodeDeltaBody(two('a', 'a')), E.NAME_ORDER)
      const t: DeltaTensor = { kind: 'dense', name: 'a', dims: [1], values: Float32Array.of(1) }
      expectCode(() => encodeDeltaBody({ codec: 'f32', tensors: [t, t] }), E.NAME_ORDER)
    })

    it('ERR_DELTA_BAD_DIMS: ndim 0 or 3, a zero dim, too many elements', () => {
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor('w', []).bytes()), E.BAD_DIMS)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor('w', [1, 1, 1]).f32s([1]).bytes()), E.BAD_DIMS)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor('w', [2, 0]).bytes()), E.BAD_DIMS)
      expectCode(() => decodeDeltaBody(new BodyBuilder().header(3, 1).tensor('w', [65536, 65536]).u32(0).f32(0).bytes()), E.BAD_DIMS)
      expect(MAX_DELTA_ELEMENTS).to.equal(2 ** 32 - 1)
    })

    it('ERR_DELTA_BAD_VARINT: non-minimal, over 32 bits, too long', () => {
      const sparse = (...gap: number[]): Uint8Array => new BodyBuilder().header(3, 1).tensor('w', [65536, 65535]).u32(1).f32(0.5).raw(...gap).u8(127).bytes()
      expect(decodeDeltaBody(sparse(0x85, 0x01)).tensors[0]).to.have.property('kind', 'sparse')
      expectCode(() => decodeDeltaBody(sparse(0x80, 0x00)), E.BAD_VARINT)
      expectCode(() => decodeDeltaBody(sparse(0x85, 0x80, 0x00)), E.BAD_VARINT)
      expectCode(() => decodeDeltaBody(sparse(0xff, 0xff, 0xff, 0xff, 0x1f)), E.BAD_VARINT)
      expectCode(() => decodeDeltaBody(sparse(0x80, 0x80, 0x80, 0x80, 0x80, 0x01)), E.BAD_VARINT)
    })

    it('ERR_DELTA_K_RANGE and ERR_DELTA_INDEX_ORDER (sparse)', () => {
      const sparse = (dims: number[], k: number, gaps: number[], q: number[]): Uint8Array =>
        new BodyBuilder().header(3, 1).tensor('w', dims).u32(k).f32(0.5).raw(...gaps).raw(...q.map(v => v & 0xff)).bytes()
      expect(decodeDeltaBody(sparse([3], 3, [0, 0, 0], [127, 1, 1])).tensors).to.have.length(1)
      expectCode(() => decodeDeltaBody(sparse([3], 4, [0, 0, 0, 0], [127, 1, 1, 1])), E.K_RANGE)
      // gaps are unsigned, so indices always ascend; what can go wrong is running past n
      expectCode(() => decodeDeltaBody(sparse([3], 2, [1, 1], [127, 1])), E.INDEX_ORDER)
      expectCode(() => decodeDeltaBody(sparse([3], 1, [3], [127])), E.INDEX_ORDER)
      const t = (indices: number[]): DeltaTensor => ({ kind: 'sparse', name: 'w', dims: [5], scale: 0.5, indices: Uint32Array.from(indices), q: Int8Array.from(indices.map(() => 127)) })
      expectCode(() => encodeDeltaBody({ codec: 'sparse', tensors: [t([2, 1])] }), E.INDEX_ORDER)
      expectCode(() => encodeDeltaBody({ codec: 'sparse', tensors: [t([1, 1])] }), E.INDEX_ORDER)
      expectCode(() => encodeDeltaBody({ codec: 'sparse', tensors: [t([0, 1, 2, 3, 4, 4])] }), E.K_RANGE)
    })

    it('ERR_DELTA_RANK_RANGE (lowrank): rank 0, rank above min(rows, cols)', () => {
      const lowrank = (rank: number): Uint8Array => new BodyBuilder().header(4, 1).tensor('w', [2, 3]).u16(rank).f32s(new Array(rank * 5).fill(0.5)).bytes()
      expect(decodeDeltaBody(lowrank(2)).tensors).to.have.length(1)
      expectCode(() => decodeDeltaBody(lowrank(0)), E.RANK_RANGE)
      expectCode(() => decodeDeltaBody(lowrank(3)), E.RANK_RANGE)
    })

    it('ERR_DELTA_NON_FINITE: NaN or infinity in f32 values, int8 scales, sparse scale, lowrank factors', () => {
      for (const bad of [NaN, Infinity, -Infinity]) {
        expectCode(() => decodeDeltaBody(new BodyBuilder().header(1, 1).tensor('w', [2]).f32s([1, bad]).bytes()), E.NON_FINITE)
        expectCode(() => decodeDeltaBody(new BodyBuilder().header(2, 1).tensor('w', [2]).f32(bad).raw(127, 1).bytes()), E.NON_FINITE)
        expectCode(() => decodeDeltaBody(new BodyBuilder().header(3, 1).tensor('w', [2]).u32(1).f32(bad).raw(0, 127).bytes()), E.NON_FINITE)
        expectCode(() => decodeDeltaBody(new BodyBuilder().header(4, 1).tensor('w', [1, 2]).u16(1).f32s([1, 0.5, bad]).bytes()), E.NON_FINITE)
        expectCode(() => encodeDeltaBody({ codec: 'f32', tensors: [{ kind: 'dense', name: 'w', dims: [1], values: Float32Array.of(bad) }] }), E.NON_FINITE)
      }
    })

    it('ERR_DELTA_BAD_QUANT: -128, a negative or -0 scale, scale 0 with values, max |q| not 127, a sparse 0 value', () => {
      const int8 = (scale: number, q: number[]): Uint8Array => new BodyBuilder().header(2, 1).tensor('w', [q.length]).f32(scale).raw(...q.map(v => v & 0xff)).bytes()
      expect(decodeDeltaBody(int8(0.5, [127, -3])).tensors).to.have.length(1)
      expect(decodeDeltaBody(int8(0, [0, 0])).tensors).to.have.length(1)
      expectCode(() => decodeDeltaBody(int8(0.5, [127, -128])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(int8(-0.5, [127, 1])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(int8(-0, [0, 0])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(int8(0, [0, 1])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(int8(0.5, [126, 1])), E.BAD_QUANT)
      const sparse = (k: number, scale: number, q: number[]): Uint8Array =>
        new BodyBuilder().header(3, 1).tensor('w', [4]).u32(k).f32(scale).raw(...q.map(() => 0)).raw(...q.map(v => v & 0xff)).bytes()
      expect(decodeDeltaBody(sparse(0, 0, [])).tensors).to.have.length(1)
      expectCode(() => decodeDeltaBody(sparse(0, 0.5, [])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(sparse(2, 0.5, [127, 0])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(sparse(1, 0.5, [-128])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(sparse(1, 0, [127])), E.BAD_QUANT)
      expectCode(() => decodeDeltaBody(sparse(1, 0.5, [100])), E.BAD_QUANT)
      expectCode(() => encodeDeltaBody({ codec: 'sparse', tensors: [{ kind: 'sparse', name: 'w', dims: [2], scale: 0.1, indices: Uint32Array.of(0), q: Int8Array.of(127) }] }), E.BAD_QUANT)
    })

    it('ERR_DELTA_BAD_KIND and ERR_DELTA_BAD_LENGTH: the encoder refuses structures it cannot write', () => {
      const dense: DeltaTensor = { kind: 'dense', name: 'w', dims: [2, 2], values: new Float32Array(4) }
      expectCode(() => encodeDeltaBody({ codec: 'int8', tensors: [dense] }), E.BAD_KIND)
      expectCode(() => encodeDeltaBody({ codec: 'lowrank', tensors: [dense] }), E.BAD_KIND)
      expectCode(() => encodeDeltaBody({ codec: 'gzip' as any, tensors: [dense] }), E.BAD_KIND)
      expectCode(() => encodeDeltaBody({ codec: 'f32', tensors: [{ ...dense, values: new Float32Array(3) }] }), E.BAD_LENGTH)
      expectCode(() => encodeDeltaBody({ codec: 'int8', tensors: [{ kind: 'int8', name: 'w', dims: [2, 2], scales: new Float32Array(1), q: new Int8Array(4) }] }), E.BAD_LENGTH)
      expectCode(() => encodeDeltaBody({ codec: 'lowrank', tensors: [{ kind: 'lowrank', name: 'w', dims: [2, 2], rank: 1, us: new Float32Array(2), vt: new Float32Array(3) }] }), E.BAD_LENGTH)
    })

    it('a body the decoder accepts is one the encoder writes back byte for byte', () => {
      const b = f32Tensor().bytes()
      expect(encodeDeltaBody(decodeDeltaBody(b))).to.deep.equal(b)
    })
  })
})
