/**
 * The canonical params body (protocols/params.md): golden bytes, round
 * trips, every rule with its code, the overlay of resolveParams, and a fuzz
 * run: every mutant of a valid body decodes to a body that re-encodes to
 * the same bytes, or throws ParamsError.
 */
import { expect } from 'aegir/chai'
import { MAX_PARAMS_BYTES, PARAM_KEY_ORDER, ParamsError, canonicalDatasetIds, decodeParams, encodeParams, resolveParams } from '../../src/protocols/params.ts'
import { Mutator } from './mutate.ts'
import type { Params } from '../../src/protocols/params.ts'

const A = new Uint8Array(32).fill(0xaa)
const B = new Uint8Array(32).fill(0xbb)
const FULL: Params = { quorumNum: 2, quorumDen: 3, minGainPpm: 5000, maxRegressionPpm: 20000, tCritMilli: 1645, sampleWindows: 64, regressionDatasets: [A, B], genesisAllocation: 1_000_000_000_000, priceLayerPosition: 1, rewardPerMicroNat: 1000, validatorReward: 1_000_000 }

function expectCode (fn: () => unknown, code: string): void {
  try {
    fn()
  } catch (err: any) {
    expect(err).to.be.instanceOf(ParamsError)
    expect(err.code).to.equal(code)
    return
  }
  throw new Error(`expected ${code}`)
}

describe('protocols/params', () => {
  it('keys in bytewise order; the body: version, count, (keyLen, key, value) entries (golden bytes)', () => {
    expect(PARAM_KEY_ORDER).to.deep.equal(['genesisAllocation', 'maxRegressionPpm', 'minGainPpm', 'priceLayerPosition', 'quorumDen', 'quorumNum', 'regressionDatasets', 'rewardPerMicroNat', 'sampleWindows', 'tCritMilli', 'validatorReward'])
    const bytes = encodeParams({ quorumNum: 2, quorumDen: 3 })
    expect(Buffer.from(bytes).toString('hex')).to.equal(
      '0102' +
      '09' + Buffer.from('quorumDen').toString('hex') + '0300000000000000' +
      '09' + Buffer.from('quorumNum').toString('hex') + '0200000000000000')
    expect(Buffer.from(encodeParams({ regressionDatasets: [A] })).toString('hex')).to.equal(
      '0101' + '12' + Buffer.from('regressionDatasets').toString('hex') + '01' + 'aa'.repeat(32))
    expect(encodeParams({})).to.deep.equal(Uint8Array.of(1, 0))
  })

  it('round-trips complete and partial bodies; re-encoding gives the same bytes; the complete body is under MAX_PARAMS_BYTES', () => {
    const full = encodeParams(FULL)
    expect(decodeParams(full)).to.deep.equal(FULL)
    expect(encodeParams(decodeParams(full))).to.deep.equal(full)
    expect(full.length).to.be.at.most(MAX_PARAMS_BYTES)
    const widest = encodeParams({ ...FULL, regressionDatasets: Array.from({ length: 16 }, (_, i) => new Uint8Array(32).fill(i)) })
    expect(widest.length).to.equal(MAX_PARAMS_BYTES)
    expect(decodeParams(encodeParams({ minGainPpm: 0 }))).to.deep.equal({ minGainPpm: 0 })
    // field order of the input object does not matter
    expect(encodeParams({ tCritMilli: 1, quorumNum: 2 })).to.deep.equal(encodeParams({ quorumNum: 2, tCritMilli: 1 }))
  })

  it('decoding refuses every broken or non-canonical body with its code', () => {
    const good = encodeParams({ quorumNum: 2, quorumDen: 3 })
    expectCode(() => decodeParams(Uint8Array.of(1)), 'ERR_PARAMS_TRUNCATED')
    expectCode(() => decodeParams(good.subarray(0, good.length - 1)), 'ERR_PARAMS_TRUNCATED')
    expectCode(() => decodeParams(Uint8Array.of(...good, 0)), 'ERR_PARAMS_TRAILING')
    expectCode(() => decodeParams(Uint8Array.of(2, ...good.subarray(1))), 'ERR_PARAMS_VERSION')
    expectCode(() => decodeParams(new Uint8Array(MAX_PARAMS_BYTES + 1)), 'ERR_PARAMS_TOO_LARGE')
    // an unknown key
    const unknown = Uint8Array.from([1, 1, 5, ...Buffer.from('quota'), ...new Uint8Array(8)])
    expectCode(() => decodeParams(unknown), 'ERR_PARAMS_UNKNOWN_KEY')
    // keys out of order, and a key twice
    const num = Uint8Array.from([9, ...Buffer.from('quorumNum'), 2, 0, 0, 0, 0, 0, 0, 0])
    const den = Uint8Array.from([9, ...Buffer.from('quorumDen'), 3, 0, 0, 0, 0, 0, 0, 0])
    expectCode(() => decodeParams(Uint8Array.from([1, 2, ...num, ...den])), 'ERR_PARAMS_KEY_ORDER')
    expectCode(() => decodeParams(Uint8Array.from([1, 2, ...num, ...num])), 'ERR_PARAMS_KEY_ORDER')
    // values out of range
    const zeroNum = Uint8Array.from([1, 1, 9, ...Buffer.from('quorumNum'), 0, 0, 0, 0, 0, 0, 0, 0])
    expectCode(() => decodeParams(zeroNum), 'ERR_PARAMS_RANGE')
    const hugeGain = Uint8Array.from([1, 1, 10, ...Buffer.from('minGainPpm'), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    expectCode(() => decodeParams(hugeGain), 'ERR_PARAMS_RANGE')
    const oneWindow = Uint8Array.from([1, 1, 13, ...Buffer.from('sampleWindows'), 1, 0, 0, 0, 0, 0, 0, 0])
    expectCode(() => decodeParams(oneWindow), 'ERR_PARAMS_RANGE')
    // dataset ids not ascending, repeated, too many
    const key = Buffer.from('regressionDatasets')
    expectCode(() => decodeParams(Uint8Array.from([1, 1, key.length, ...key, 2, ...B, ...A])), 'ERR_PARAMS_DATASET_ORDER')
    expectCode(() => decodeParams(Uint8Array.from([1, 1, key.length, ...key, 2, ...A, ...A])), 'ERR_PARAMS_DATASET_ORDER')
    expectCode(() => decodeParams(Uint8Array.from([1, 1, key.length, ...key, 17, ...new Uint8Array(17 * 32)])), 'ERR_PARAMS_RANGE')
  })

  it('encoding refuses what decoding would refuse', () => {
    expectCode(() => encodeParams({ quorumNum: 0 }), 'ERR_PARAMS_RANGE')
    expectCode(() => encodeParams({ minGainPpm: 1.5 }), 'ERR_PARAMS_RANGE')
    expectCode(() => encodeParams({ sampleWindows: 4097 }), 'ERR_PARAMS_RANGE')
    expectCode(() => encodeParams({ regressionDatasets: [B, A] }), 'ERR_PARAMS_DATASET_ORDER')
    expectCode(() => encodeParams({ regressionDatasets: [A.subarray(1)] }), 'ERR_PARAMS_DATASET_ORDER')
    expectCode(() => encodeParams({ quota: 1 } as any), 'ERR_PARAMS_UNKNOWN_KEY')
    // ledger amounts: integers 0 .. 2^53 - 1 (u64 on the wire, checked on decode)
    expect(decodeParams(encodeParams({ genesisAllocation: Number.MAX_SAFE_INTEGER, priceLayerPosition: 0 }))).to.deep.equal({ genesisAllocation: Number.MAX_SAFE_INTEGER, priceLayerPosition: 0 })
    expectCode(() => encodeParams({ validatorReward: -1 }), 'ERR_PARAMS_RANGE')
    expectCode(() => encodeParams({ rewardPerMicroNat: 2 ** 53 }), 'ERR_PARAMS_RANGE')
    const amountKey = Buffer.from('validatorReward')
    expectCode(() => decodeParams(Uint8Array.from([1, 1, amountKey.length, ...amountKey, 0, 0, 0, 0, 0, 0, 0x20, 0])), 'ERR_PARAMS_RANGE')
    expect(canonicalDatasetIds([B, A, B])).to.deep.equal([A, B])
  })

  it('resolveParams sets the body\'s keys over complete params and checks the quorum lies in (1/2, 1]', () => {
    expect(resolveParams(FULL, { minGainPpm: 1 })).to.deep.equal({ ...FULL, minGainPpm: 1 })
    expect(resolveParams(FULL, { regressionDatasets: [] }).regressionDatasets).to.deep.equal([])
    expect(resolveParams(FULL, { quorumNum: 3, quorumDen: 4 })).to.include({ quorumNum: 3, quorumDen: 4 })
    expect(resolveParams(FULL, { quorumNum: 1, quorumDen: 1 })).to.include({ quorumNum: 1, quorumDen: 1 })
    expectCode(() => resolveParams(FULL, { quorumNum: 4 }), 'ERR_PARAMS_QUORUM') // 4/3 > 1
    expectCode(() => resolveParams(FULL, { quorumDen: 4 }), 'ERR_PARAMS_QUORUM') // 2/4 = 1/2: two quorums may share no member
    expectCode(() => resolveParams(FULL, { tCritMilli: -1 }), 'ERR_PARAMS_RANGE')
  })

  it('fuzz: 20000 mutants of valid bodies decode to canonical bodies or throw ParamsError', () => {
    const seeds = [encodeParams(FULL), encodeParams({ quorumNum: 2, quorumDen: 3 }), encodeParams({ regressionDatasets: [A] }), encodeParams({})]
    const m = new Mutator(11)
    let decoded = 0
    for (let i = 0; i < 20000; i++) {
      const mutant = m.mutate(seeds[i % seeds.length])
      let body
      try {
        body = decodeParams(mutant)
      } catch (err) {
        if (!(err instanceof ParamsError)) {
          throw new Error(`mutant ${Buffer.from(mutant).toString('hex')} threw ${String(err)}`)
        }
        continue
      }
      decoded++
      expect(encodeParams(body)).to.deep.equal(mutant)
    }
    // some mutants (a changed value byte) are valid bodies
    expect(decoded).to.be.greaterThan(100)
  })
})
