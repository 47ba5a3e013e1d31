/**
 * The canonical attestation payload (protocols/attestation.md): golden
 * bytes, round trips, every rule with its code, and a fuzz run: every
 * mutant of a valid payload decodes to one that re-encodes to the same
 * bytes, or throws AttestationCodecError.
 */
import { expect } from 'aegir/chai'
import { AttestationCodecError, MAX_ATTESTATION_BYTES, MAX_ATTESTATION_DATASETS, decodeAttestationPayload, encodeAttestationPayload } from '../../src/protocols/attestation.ts'
import { MAX_SAMPLE_WINDOWS } from '../../src/protocols/params.ts'
import { Mutator } from './mutate.ts'
import type { DatasetMeasurement } from '../../src/protocols/attestation.ts'

const D1 = new Uint8Array(32).fill(1)
const D2 = new Uint8Array(32).fill(2)

function measurement (datasetId: Uint8Array, m: number, seed = 1): DatasetMeasurement {
  return {
    datasetId,
    windows: Array.from({ length: m }, (_, i) => (i * 7919 + seed) % 100_000),
    base: Array.from({ length: m }, (_, i) => BigInt(2_000_000 + ((i * 31 + seed) % 1000))),
    cand: Array.from({ length: m }, (_, i) => BigInt(1_990_000 + ((i * 17 + seed) % 1000)))
  }
}

function expectCode (fn: () => unknown, code: string): void {
  try {
    fn()
  } catch (err: any) {
    expect(err).to.be.instanceOf(AttestationCodecError)
    expect(err.code).to.equal(code)
    return
  }
  throw new Error(`expected ${code}`)
}

describe('protocols/attestation', () => {
  it('version, dataset count, then per dataset: id, u16le m, m x (u32le window, u64le base, u64le cand) (golden bytes)', () => {
    const bytes = encodeAttestationPayload([{ datasetId: D1, windows: [5, 2], base: [1_000_000n, 2n], cand: [999_999n, 3n] }])
    expect(Buffer.from(bytes).toString('hex')).to.equal(
      '0101' + '01'.repeat(32) + '0200' +
      '05000000' + '40420f0000000000' + '3f420f0000000000' +
      '02000000' + '0200000000000000' + '0300000000000000')
    expect(encodeAttestationPayload([])).to.deep.equal(Uint8Array.of(1, 0))
  })

  it('round-trips; re-encoding gives the same bytes; the widest payload is MAX_ATTESTATION_BYTES', () => {
    const value = [measurement(D1, 64), measurement(D2, 3, 9), measurement(new Uint8Array(32).fill(3), 0)]
    const bytes = encodeAttestationPayload(value)
    expect(decodeAttestationPayload(bytes)).to.deep.equal(value)
    expect(encodeAttestationPayload(decodeAttestationPayload(bytes))).to.deep.equal(bytes)
    const widest = Array.from({ length: MAX_ATTESTATION_DATASETS }, (_, k) => measurement(new Uint8Array(32).fill(k), MAX_SAMPLE_WINDOWS, k))
    expect(encodeAttestationPayload(widest).length).to.equal(MAX_ATTESTATION_BYTES)
    const max = { datasetId: D1, windows: [0xffffffff], base: [0xffff_ffff_ffff_ffffn], cand: [0n] }
    expect(decodeAttestationPayload(encodeAttestationPayload([max]))).to.deep.equal([max])
  })

  it('decoding refuses every broken or non-canonical payload with its code', () => {
    const good = encodeAttestationPayload([measurement(D1, 4)])
    expectCode(() => decodeAttestationPayload(Uint8Array.of(1)), 'ERR_ATTESTATION_PAYLOAD_TRUNCATED')
    expectCode(() => decodeAttestationPayload(good.subarray(0, 30)), 'ERR_ATTESTATION_PAYLOAD_TRUNCATED')
    expectCode(() => decodeAttestationPayload(good.subarray(0, good.length - 1)), 'ERR_ATTESTATION_PAYLOAD_TRUNCATED')
    expectCode(() => decodeAttestationPayload(Uint8Array.of(...good, 0)), 'ERR_ATTESTATION_PAYLOAD_TRAILING')
    expectCode(() => decodeAttestationPayload(Uint8Array.of(9, ...good.subarray(1))), 'ERR_ATTESTATION_PAYLOAD_VERSION')
    expectCode(() => decodeAttestationPayload(Uint8Array.of(1, MAX_ATTESTATION_DATASETS + 1)), 'ERR_ATTESTATION_PAYLOAD_COUNT')
    const tooMany = Uint8Array.from(good)
    new DataView(tooMany.buffer).setUint16(34, MAX_SAMPLE_WINDOWS + 1, true)
    expectCode(() => decodeAttestationPayload(tooMany), 'ERR_ATTESTATION_PAYLOAD_COUNT')
    expectCode(() => decodeAttestationPayload(new Uint8Array(MAX_ATTESTATION_BYTES + 1)), 'ERR_ATTESTATION_PAYLOAD_TOO_LARGE')
    // a dataset twice
    const twice = encodeAttestationPayload([measurement(D1, 2), measurement(D2, 2)])
    twice.set(D1, 2 + 34 + 2 * 20)
    expectCode(() => decodeAttestationPayload(twice), 'ERR_ATTESTATION_PAYLOAD_DUPLICATE')
    // a window twice
    const again = Uint8Array.from(good)
    again.set(again.subarray(36, 40), 56)
    expectCode(() => decodeAttestationPayload(again), 'ERR_ATTESTATION_PAYLOAD_DUPLICATE')
  })

  it('encoding refuses what decoding would refuse', () => {
    const m = measurement(D1, 3)
    expectCode(() => encodeAttestationPayload([m, m]), 'ERR_ATTESTATION_PAYLOAD_DUPLICATE')
    expectCode(() => encodeAttestationPayload([{ ...m, windows: [1, 1, 2] }]), 'ERR_ATTESTATION_PAYLOAD_DUPLICATE')
    expectCode(() => encodeAttestationPayload([{ ...m, base: [1n] }]), 'ERR_ATTESTATION_PAYLOAD_COUNT')
    expectCode(() => encodeAttestationPayload([{ ...m, cand: [1n, -1n, 2n] }]), 'ERR_ATTESTATION_PAYLOAD_VALUE')
    expectCode(() => encodeAttestationPayload([{ ...m, base: [1n, 2n ** 64n, 2n] }]), 'ERR_ATTESTATION_PAYLOAD_VALUE')
    expectCode(() => encodeAttestationPayload([{ ...m, windows: [1, 2.5, 3] }]), 'ERR_ATTESTATION_PAYLOAD_VALUE')
    expectCode(() => encodeAttestationPayload([{ ...m, datasetId: D1.subarray(1) }]), 'ERR_ATTESTATION_PAYLOAD_VALUE')
    expectCode(() => encodeAttestationPayload(Array.from({ length: MAX_ATTESTATION_DATASETS + 1 }, (_, k) => measurement(new Uint8Array(32).fill(k), 1))), 'ERR_ATTESTATION_PAYLOAD_COUNT')
  })

  it('fuzz: 20000 mutants of valid payloads decode to canonical payloads or throw AttestationCodecError', () => {
    const seeds = [encodeAttestationPayload([measurement(D1, 8), measurement(D2, 3)]), encodeAttestationPayload([measurement(D1, 2)]), encodeAttestationPayload([])]
    const m = new Mutator(5)
    let decoded = 0
    for (let i = 0; i < 20000; i++) {
      const mutant = m.mutate(seeds[i % seeds.length])
      let value
      try {
        value = decodeAttestationPayload(mutant)
      } catch (err) {
        if (!(err instanceof AttestationCodecError)) {
          throw new Error(`mutant ${Buffer.from(mutant).toString('hex')} threw ${String(err)}`)
        }
        continue
      }
      decoded++
      expect(encodeAttestationPayload(value)).to.deep.equal(mutant)
    }
    expect(decoded).to.be.greaterThan(1000)
  })
})
