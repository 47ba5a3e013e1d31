import { createHash } from 'node:crypto'
import { expect } from 'aegir/chai'
import { MAX_DATASET_BYTES, decodeIdsPayload, encodeIdsPayload, idsPayloadSize, isEvalWindow, sequenceLengths, splitBucket, splitWindows, windowsOfSequence } from '../../src/protocols/dataset.ts'
import type { TokenStream } from '../../src/protocols/dataset.ts'

function stream (...sequences: number[][]): TokenStream {
  const offsets = [0]
  for (const s of sequences) {
    offsets.push(offsets[offsets.length - 1] + s.length)
  }
  return { tokens: Uint32Array.from(sequences.flat()), offsets: Uint32Array.from(offsets) }
}

function u32le (...values: number[]): Uint8Array {
  const out = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => out.writeUInt32LE(v, i * 4))
  return out
}

function expectCodecError (fn: () => unknown, code: string, message?: RegExp): void {
  let err: any
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, 'expected a throw').to.exist()
  expect(err.code, err.message).to.equal(code)
  expect(err.name).to.equal('DatasetCodecError')
  if (message != null) {
    expect(err.message).to.match(message)
  }
}

const ID_A = new Uint8Array(32).fill(1)
const ID_B = new Uint8Array(32).fill(2)

describe('dataset protocol', () => {
  describe('ids payload', () => {
    it('encodes u32le count, then per sequence u32le length and the ids (golden bytes)', () => {
      const bytes = encodeIdsPayload(stream([1, 2], [300, 4, 5]))
      expect(Buffer.from(bytes).toString('hex')).to.equal('02000000020000000100000002000000030000002c0100000400000005000000')
      expect(bytes.length).to.equal(idsPayloadSize(2, 5))
    })

    it('round-trips random streams bit-exactly, and re-encodes to the same bytes', () => {
      let x = 7
      const next = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x }
      for (let round = 0; round < 50; round++) {
        const sequences = Array.from({ length: 1 + next() % 20 }, () => Array.from({ length: 2 + next() % 40 }, () => next()))
        const s = stream(...sequences)
        const bytes = encodeIdsPayload(s)
        const back = decodeIdsPayload(bytes)
        expect(back.tokens).to.deep.equal(s.tokens)
        expect(back.offsets).to.deep.equal(s.offsets)
        expect(encodeIdsPayload(back)).to.deep.equal(bytes)
      }
    })

    it('decoding rejects every non-canonical or broken payload with its code', () => {
      const good = encodeIdsPayload(stream([1, 2], [3, 4, 5]))
      expectCodecError(() => decodeIdsPayload(good.subarray(0, 3)), 'ERR_DATASET_PAYLOAD_TRUNCATED', /no sequence count/)
      expectCodecError(() => decodeIdsPayload(good.subarray(0, good.length - 4)), 'ERR_DATASET_PAYLOAD_TRUNCATED', /inside sequence 1/)
      expectCodecError(() => decodeIdsPayload(good.subarray(0, good.length - 1)), 'ERR_DATASET_PAYLOAD_TRUNCATED')
      expectCodecError(() => decodeIdsPayload(Buffer.concat([good, new Uint8Array(1)])), 'ERR_DATASET_PAYLOAD_TRAILING', /1 bytes follow/)
      expectCodecError(() => decodeIdsPayload(Buffer.concat([good, u32le(0)])), 'ERR_DATASET_PAYLOAD_TRAILING', /4 bytes follow/)
      expectCodecError(() => decodeIdsPayload(u32le(0)), 'ERR_DATASET_PAYLOAD_EMPTY')
      expectCodecError(() => decodeIdsPayload(u32le(1, 1, 7, 0, 0)), 'ERR_DATASET_PAYLOAD_SHORT_SEQUENCE', /sequence 0 has 1 ids/)
      expectCodecError(() => decodeIdsPayload(u32le(2, 2, 1, 2, 0, 0, 0, 0)), 'ERR_DATASET_PAYLOAD_SHORT_SEQUENCE', /sequence 1 has 0 ids/)
      // a count the bytes cannot hold is refused before anything is allocated for it
      expectCodecError(() => decodeIdsPayload(u32le(0xffffffff, 2, 1, 2)), 'ERR_DATASET_PAYLOAD_TRUNCATED', /cannot hold 4294967295 sequences/)
      // the first sequence claiming the bytes of the second one's length
      expectCodecError(() => decodeIdsPayload(u32le(2, 5, 1, 2, 3, 4, 5)), 'ERR_DATASET_PAYLOAD_TRUNCATED', /inside sequence 0/)
      expectCodecError(() => decodeIdsPayload(good, { vocab: 5 }), 'ERR_DATASET_PAYLOAD_ID_RANGE', /id 5 at position 2 is outside \[0, 5\)/)
      expect(decodeIdsPayload(good, { vocab: 6 }).tokens).to.deep.equal(Uint32Array.of(1, 2, 3, 4, 5))
      expectCodecError(() => decodeIdsPayload(new Uint8Array(MAX_DATASET_BYTES + 1)), 'ERR_DATASET_PAYLOAD_TOO_LARGE')
    })

    it('encoding refuses what decoding would refuse', () => {
      expectCodecError(() => encodeIdsPayload({ tokens: new Uint32Array(0), offsets: Uint32Array.of(0) }), 'ERR_DATASET_PAYLOAD_EMPTY')
      expectCodecError(() => encodeIdsPayload(stream([1, 2], [3])), 'ERR_DATASET_PAYLOAD_SHORT_SEQUENCE', /sequence 1 has 1 ids/)
      expectCodecError(() => encodeIdsPayload(stream([1, 512]), { vocab: 512 }), 'ERR_DATASET_PAYLOAD_ID_RANGE', /id 512/)
      const huge = { tokens: new Uint32Array(MAX_DATASET_BYTES / 4), offsets: Uint32Array.of(0, MAX_DATASET_BYTES / 4) }
      expectCodecError(() => encodeIdsPayload(huge), 'ERR_DATASET_PAYLOAD_TOO_LARGE')
    })
  })

  describe('split', () => {
    it('cuts each sequence on its own; a last partial window is kept only with >= 2 tokens', () => {
      const split = splitWindows({ datasetId: ID_A, sequenceLengths: [5, 1, 2, 3, 8], splitTokens: 2, evalPermille: 0 })
      // 5 -> [0,2) [2,4) (the lone 5th token dropped); 1 -> none; 2 -> [6,8); 3 -> [8,10); 8 -> four windows
      expect(Array.from(split.starts)).to.deep.equal([0, 2, 6, 8, 11, 13, 15, 17])
      expect(Array.from(split.lengths)).to.deep.equal([2, 2, 2, 2, 2, 2, 2, 2])
      const wide = splitWindows({ datasetId: ID_A, sequenceLengths: [300, 129, 1], splitTokens: 128, evalPermille: 0 })
      expect(Array.from(wide.starts)).to.deep.equal([0, 128, 256, 300])
      expect(Array.from(wide.lengths)).to.deep.equal([128, 128, 44, 128])
      expect(windowsOfSequence(129, 128)).to.equal(1)
      expect(windowsOfSequence(130, 128)).to.equal(2)
      expect(sequenceLengths(stream([1, 2, 3], [4, 5]))).to.deep.equal(Uint32Array.of(3, 2))
    })

    it('window w is eval iff u16be(sha256("bly/split/v1" || id || u32be(w))[0..2]) mod 1000 < evalPermille', () => {
      for (let w = 0; w < 200; w++) {
        const index = Buffer.alloc(4)
        index.writeUInt32BE(w)
        const d = createHash('sha256').update(Buffer.concat([Buffer.from('bly/split/v1'), ID_A, index])).digest()
        expect(splitBucket(ID_A, w)).to.equal(d.readUInt16BE(0) % 1000)
        expect(isEvalWindow(ID_A, w, 100)).to.equal(d.readUInt16BE(0) % 1000 < 100)
      }
      // pinned: a change to the rule changes every dataset's split
      const split = splitWindows({ datasetId: ID_A, sequenceLengths: [400], splitTokens: 4, evalPermille: 100 })
      expect(Array.from(split.evalWindows)).to.deep.equal([21, 36, 70, 87, 95])
    })

    it('is deterministic, partitions the windows, and depends on the dataset id', () => {
      const input = { datasetId: ID_A, sequenceLengths: [1000, 77, 2, 5000], splitTokens: 16, evalPermille: 250 }
      const a = splitWindows(input)
      const b = splitWindows({ ...input, sequenceLengths: [1000, 77, 2, 5000] })
      expect(a).to.deep.equal(b)
      const all = [...a.evalWindows, ...a.trainWindows].sort((x, y) => x - y)
      expect(all).to.deep.equal(Array.from({ length: a.count }, (_, i) => i))
      const other = splitWindows({ ...input, datasetId: ID_B })
      expect(other.count).to.equal(a.count)
      expect(Array.from(other.evalWindows)).to.not.deep.equal(Array.from(a.evalWindows))
    })

    it('eval rates follow evalPermille (interleaved over the whole stream)', () => {
      const n = 20_000
      const lengths = [n * 4]
      expect(splitWindows({ datasetId: ID_A, sequenceLengths: lengths, splitTokens: 4, evalPermille: 0 }).evalWindows.length).to.equal(0)
      expect(splitWindows({ datasetId: ID_A, sequenceLengths: lengths, splitTokens: 4, evalPermille: 1000 }).trainWindows.length).to.equal(0)
      for (const permille of [10, 100, 500]) {
        const split = splitWindows({ datasetId: ID_B, sequenceLengths: lengths, splitTokens: 4, evalPermille: permille })
        // buckets 0..535 have 66 of the 65536 u16 values, 536..999 have 65: p = 66 * permille / 65536 for permille <= 536
        const p = 66 * permille / 65536
        const sd = Math.sqrt(n * p * (1 - p))
        expect(split.evalWindows.length, `permille ${permille}`).to.be.within(n * p - 5 * sd, n * p + 5 * sd)
        // interleaved: each quarter of the stream holds about a quarter of the eval windows
        for (let q = 0; q < 4; q++) {
          const inQuarter = Array.from(split.evalWindows).filter(w => w >= q * n / 4 && w < (q + 1) * n / 4).length
          const mean = n * p / 4
          expect(inQuarter, `permille ${permille} quarter ${q}`).to.be.within(mean - 5 * Math.sqrt(mean), mean + 5 * Math.sqrt(mean))
        }
      }
    })

    it('refuses parameters out of range', () => {
      const base = { datasetId: ID_A, sequenceLengths: [10], splitTokens: 4, evalPermille: 100 }
      expectCodecError(() => splitWindows({ ...base, splitTokens: 1 }), 'ERR_DATASET_SPLIT', /splitTokens/)
      expectCodecError(() => splitWindows({ ...base, splitTokens: 65537 }), 'ERR_DATASET_SPLIT', /splitTokens/)
      expectCodecError(() => splitWindows({ ...base, evalPermille: 1001 }), 'ERR_DATASET_SPLIT', /evalPermille/)
      expectCodecError(() => splitWindows({ ...base, evalPermille: 1.5 }), 'ERR_DATASET_SPLIT', /evalPermille/)
      expectCodecError(() => splitWindows({ ...base, datasetId: new Uint8Array(31) }), 'ERR_DATASET_SPLIT', /32 bytes/)
      expectCodecError(() => splitWindows({ ...base, sequenceLengths: [-1] }), 'ERR_DATASET_SPLIT', /invalid length/)
      expectCodecError(() => splitWindows({ ...base, sequenceLengths: [2 ** 31, 2 ** 31] }), 'ERR_DATASET_SPLIT', /longer than 2\^32 - 1/)
    })
  })
})
