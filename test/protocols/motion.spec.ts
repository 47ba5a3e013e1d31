/**
 * The canonical motion payload (protocols/motion.md): a validator key for
 * validators.add/remove, a non-empty params body for params.set; every rule
 * with its code, and a fuzz run: every mutant decodes to a canonical
 * payload or throws MotionCodecError.
 */
import { expect } from 'aegir/chai'
import { MotionCodecError, decodeMotionPayload, encodeMotionPayload } from '../../src/protocols/motion.ts'
import { encodeParams } from '../../src/protocols/params.ts'
import { Mutator } from './mutate.ts'

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i)

function expectCode (fn: () => unknown, code: string): MotionCodecError {
  try {
    fn()
  } catch (err: any) {
    expect(err).to.be.instanceOf(MotionCodecError)
    expect(err.code).to.equal(code)
    return err
  }
  throw new Error(`expected ${code}`)
}

describe('protocols/motion', () => {
  it('validators.add / validators.remove: the payload is the 32-byte key', () => {
    for (const kind of ['validators.add', 'validators.remove'] as const) {
      const bytes = encodeMotionPayload({ kind, key: KEY })
      expect(bytes).to.deep.equal(KEY)
      expect(decodeMotionPayload(kind, bytes)).to.deep.equal({ kind, key: KEY })
    }
  })

  it('params.set: the payload is a canonical params body with at least one key', () => {
    const bytes = encodeMotionPayload({ kind: 'params.set', params: { minGainPpm: 1000, sampleWindows: 32 } })
    expect(bytes).to.deep.equal(encodeParams({ minGainPpm: 1000, sampleWindows: 32 }))
    expect(decodeMotionPayload('params.set', bytes)).to.deep.equal({ kind: 'params.set', params: { minGainPpm: 1000, sampleWindows: 32 } })
  })

  it('refuses an unknown kind, a key of another length, an empty or broken params body, each with its code', () => {
    expectCode(() => decodeMotionPayload('validators.swap', KEY), 'ERR_MOTION_PAYLOAD_KIND')
    expectCode(() => encodeMotionPayload({ kind: 'x', key: KEY } as any), 'ERR_MOTION_PAYLOAD_KIND')
    expectCode(() => decodeMotionPayload('validators.add', KEY.subarray(1)), 'ERR_MOTION_PAYLOAD_KEY')
    expectCode(() => decodeMotionPayload('validators.remove', Uint8Array.of(...KEY, 0)), 'ERR_MOTION_PAYLOAD_KEY')
    expectCode(() => encodeMotionPayload({ kind: 'validators.add', key: KEY.subarray(2) }), 'ERR_MOTION_PAYLOAD_KEY')
    expectCode(() => decodeMotionPayload('params.set', encodeParams({})), 'ERR_MOTION_PAYLOAD_EMPTY')
    expectCode(() => encodeMotionPayload({ kind: 'params.set', params: {} }), 'ERR_MOTION_PAYLOAD_EMPTY')
    const err = expectCode(() => decodeMotionPayload('params.set', Uint8Array.of(1, 1, 3, 0x61, 0x62, 0x63)), 'ERR_MOTION_PAYLOAD_PARAMS')
    expect((err.cause as any).code).to.equal('ERR_PARAMS_UNKNOWN_KEY')
    expectCode(() => encodeMotionPayload({ kind: 'params.set', params: { quorumNum: 0 } }), 'ERR_MOTION_PAYLOAD_PARAMS')
  })

  it('fuzz: 20000 mutants decode to canonical payloads or throw MotionCodecError', () => {
    const seeds: Array<[string, Uint8Array]> = [
      ['validators.add', KEY],
      ['validators.remove', KEY],
      ['params.set', encodeParams({ minGainPpm: 1000 })],
      ['params.set', encodeParams({ quorumNum: 3, quorumDen: 4, regressionDatasets: [KEY] })]
    ]
    const m = new Mutator(3)
    let decoded = 0
    for (let i = 0; i < 20000; i++) {
      const [kind, seed] = seeds[i % seeds.length]
      const mutant = m.mutate(seed)
      let body
      try {
        body = decodeMotionPayload(kind, mutant)
      } catch (err) {
        if (!(err instanceof MotionCodecError)) {
          throw new Error(`mutant ${Buffer.from(mutant).toString('hex')} threw ${String(err)}`)
        }
        continue
      }
      decoded++
      expect(encodeMotionPayload(body)).to.deep.equal(mutant)
    }
    expect(decoded).to.be.greaterThan(1000)
  })
})
