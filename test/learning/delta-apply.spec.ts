import { expect } from 'aegir/chai'
import { applyDelta, applyDeltaInPlace, deltaTensorValues } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { WeightDeltaErrorCode } from '../../src/learning/delta-errors.ts'
import { cloneF32Tensors } from '../../src/learning/f32-tensors.ts'
import { weightsHash } from '../../src/learning/weights-hash.ts'
import { DELTA_CODECS, decodeDeltaPayload, encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { UNIT_SHAPES, bitsOf, expectCode, randomTensors } from './helpers.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { Delta } from '../../src/protocols/delta.ts'

const weights = (values: number[], shape: number[] = [values.length]): F32Tensors => new Map([['w', { shape, values: Float32Array.from(values) }]])
const after = (w: F32Tensors, delta: Delta): number[] => Array.from(applyDelta(w, delta).get('w')?.values ?? [])

describe('learning/delta-apply', () => {
  describe('hand-computed cases', () => {
    it('int8: w + fround(q x scale of the row)', () => {
      const delta: Delta = { codec: 'int8', tensors: [{ kind: 'int8', name: 'w', dims: [2, 2], scales: Float32Array.of(0.5, 0.25), q: Int8Array.of(127, -1, 127, 0) }] }
      expect(after(weights([1, 2, 0, 4], [2, 2]), delta)).to.deep.equal([64.5, 1.5, 31.75, 4])
    })

    it('int8: q x scale is rounded to float32 before the add', () => {
      // 127 x (1 + 2^-23) = 127 + 1.98 ulps of 127 (2^-17): rounds to 127 + 2^-16
      const delta: Delta = { codec: 'int8', tensors: [{ kind: 'int8', name: 'w', dims: [1], scales: Float32Array.of(1 + 2 ** -23), q: Int8Array.of(127) }] }
      expect(after(weights([0]), delta)).to.deep.equal([127 + 2 ** -16])
    })

    it('f32: w + d rounds to nearest even in float32', () => {
      // 1 + 2^-24 is a tie -> 1; 1 + 3 x 2^-24 is a tie -> 1 + 2^-22 (even mantissa)
      const delta: Delta = { codec: 'f32', tensors: [{ kind: 'dense', name: 'w', dims: [3], values: Float32Array.of(2 ** -24, 3 * 2 ** -24, -0.5) }] }
      expect(after(weights([1, 1, 1]), delta)).to.deep.equal([1, 1 + 2 ** -22, 0.5])
    })

    it('sparse: only the listed indices change; an untouched -0 stays -0', () => {
      const delta: Delta = { codec: 'sparse', tensors: [{ kind: 'sparse', name: 'w', dims: [4], scale: 0.5, indices: Uint32Array.of(1, 3), q: Int8Array.of(127, -2) }] }
      const out = after(weights([1, 2, -0, 4]), delta)
      expect(out).to.deep.equal([1, 65.5, -0, 3])
      expect(Object.is(out[2], -0)).to.equal(true)
    })

    it('lowrank: sum over k in float64 in k order, then fround', () => {
      const delta: Delta = { codec: 'lowrank', tensors: [{ kind: 'lowrank', name: 'w', dims: [2, 2], rank: 2, us: Float32Array.of(1, 2, 3, 4), vt: Float32Array.of(0.5, -1, 0.25, 0.125) }] }
      // d = [[1*0.5 + 2*0.25, 1*-1 + 2*0.125], [3*0.5 + 4*0.25, 3*-1 + 4*0.125]] = [[1, -0.75], [2.5, -2.5]]
      expect(after(weights([1, 2, 0, 4], [2, 2]), delta)).to.deep.equal([2, 1.25, 2.5, 1.5])
    })

    it('lowrank: the order is fixed (2^53 + 1 - 2^53 is 0 in k order, not 1)', () => {
      const us = new Float32Array(9)
      us.set([1, 1, 1], 0) // row 0 of U S
      const vt = new Float32Array(9)
      vt[0] = 2 ** 53 // column 0 of V^T down k: 2^53, 1, -2^53
      vt[3] = 1
      vt[6] = -(2 ** 53)
      const delta: Delta = { codec: 'lowrank', tensors: [{ kind: 'lowrank', name: 'w', dims: [3, 3], rank: 3, us, vt }] }
      expect(after(weights(new Array(9).fill(0.25), [3, 3]), delta)[0]).to.equal(0.25)
      // rank 5 (the four-at-a-time path, then one more): ((((2^53 + 1) - 2^53) + 1) + 1) = 2
      const us5 = new Float32Array(25)
      us5.set([1, 1, 1, 1, 1], 0)
      const vt5 = new Float32Array(25)
      vt5.set([2 ** 53, 1, -(2 ** 53), 1, 1].flatMap(x => [x, 0, 0, 0, 0]), 0)
      const delta5: Delta = { codec: 'lowrank', tensors: [{ kind: 'lowrank', name: 'w', dims: [5, 5], rank: 5, us: us5, vt: vt5 }] }
      expect(after(weights(new Array(25).fill(0.25), [5, 5]), delta5)[0]).to.equal(2.25)
      expect(deltaTensorValues(delta5.tensors[0])[0]).to.equal(2)
    })
  })

  it('apply equals w + the decoded difference, element by element, for every codec', () => {
    const base = randomTensors(1, UNIT_SHAPES)
    const target = randomTensors(2, UNIT_SHAPES, 0.001)
    for (const codec of DELTA_CODECS) {
      const { delta } = encodeDelta(target, { codec, density: 0.2, rank: 3 })
      const out = applyDelta(base, delta as Delta)
      for (const t of (delta as Delta).tensors) {
        const d = deltaTensorValues(t)
        const w = base.get(t.name)?.values as Float32Array
        const expected = Float32Array.from(w, (x, i) => Math.fround(x + d[i]))
        expect(bitsOf(out.get(t.name)?.values as Float32Array), `${codec} ${t.name}`).to.deep.equal(bitsOf(expected))
      }
    }
  })

  it('two independent decodes and applies give bit-identical weights and the same weights hash', () => {
    const base = randomTensors(3, UNIT_SHAPES)
    const diff = randomTensors(4, UNIT_SHAPES, 0.003)
    for (const codec of DELTA_CODECS) {
      const payload = encodeDeltaPayload(encodeDelta(diff, { codec, density: 0.05, rank: 4 }).delta as Delta)
      const a = cloneF32Tensors(base)
      const b = cloneF32Tensors(base)
      applyDeltaInPlace(a, decodeDeltaPayload(Uint8Array.from(payload), { codec }).delta)
      applyDeltaInPlace(b, decodeDeltaPayload(Uint8Array.from(payload), { codec }).delta)
      for (const name of a.keys()) {
        expect(Buffer.compare(bitsOf(a.get(name)?.values as Float32Array), bitsOf(b.get(name)?.values as Float32Array)), `${codec} ${name}`).to.equal(0)
      }
      expect(weightsHash([{ unit: 1, tensors: a }])).to.deep.equal(weightsHash([{ unit: 1, tensors: b }]))
      expect(weightsHash([{ unit: 1, tensors: a }])).to.not.deep.equal(weightsHash([{ unit: 1, tensors: base }]))
    }
  })

  describe('errors', () => {
    const delta: Delta = { codec: 'f32', tensors: [{ kind: 'dense', name: 'w', dims: [2], values: Float32Array.of(1, 2) }] }

    it('a tensor the weights do not hold, or another shape: nothing is written', () => {
      const w = weights([1, 2, 3])
      expectCode(() => { applyDeltaInPlace(w, delta) }, WeightDeltaErrorCode.SHAPE_MISMATCH)
      expectCode(() => { applyDeltaInPlace(new Map([['v', { shape: [2], values: new Float32Array(2) }]]), delta) }, WeightDeltaErrorCode.EXTRA_TENSOR)
      expectCode(() => { applyDeltaInPlace(weights([1, 2], [1, 2]), delta) }, WeightDeltaErrorCode.SHAPE_MISMATCH)
      expect(Array.from(w.get('w')?.values ?? [])).to.deep.equal([1, 2, 3])
    })

    it('a float32 overflow is ERR_DELTA_NON_FINITE_RESULT; applyDelta leaves its input intact', () => {
      const big = 3.4028234663852886e38
      const w = weights([big, 1])
      expectCode(() => applyDelta(w, { codec: 'f32', tensors: [{ kind: 'dense', name: 'w', dims: [2], values: Float32Array.of(big, 0) }] }), WeightDeltaErrorCode.NON_FINITE_RESULT)
      expectCode(() => applyDelta(w, { codec: 'int8', tensors: [{ kind: 'int8', name: 'w', dims: [2], scales: Float32Array.of(big), q: Int8Array.of(127, 0) }] }), WeightDeltaErrorCode.NON_FINITE_RESULT)
      expectCode(() => applyDelta(w, { codec: 'sparse', tensors: [{ kind: 'sparse', name: 'w', dims: [2], scale: big, indices: Uint32Array.of(0), q: Int8Array.of(127) }] }), WeightDeltaErrorCode.NON_FINITE_RESULT)
      expectCode(() => applyDelta(weights([big, 1], [1, 2]), { codec: 'lowrank', tensors: [{ kind: 'lowrank', name: 'w', dims: [1, 2], rank: 1, us: Float32Array.of(big), vt: Float32Array.of(2, 0) }] }), WeightDeltaErrorCode.NON_FINITE_RESULT)
      expect(Array.from(w.get('w')?.values ?? [])).to.deep.equal([big, 1])
    })
  })
})
