import { expect } from 'aegir/chai'
import { applyDelta } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { WeightDeltaErrorCode } from '../../src/learning/delta-errors.ts'
import { toF32Tensors } from '../../src/learning/f32-tensors.ts'
import { weightDiff } from '../../src/learning/weight-diff.ts'
import { fromFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { UNIT_SHAPES, bitsOf, expectCode, randomTensors } from './helpers.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { Delta } from '../../src/protocols/delta.ts'

function asCheckpoint (t: F32Tensors, dtype: 'F32' | 'BF16' = 'F32'): Map<string, RawTensor> {
  return new Map([...t].map(([name, x]) => [name, { dtype, shape: [...x.shape], data: fromFloat32(x.values, dtype) }]))
}

describe('learning/weight-diff', () => {
  const live = randomTensors(21, UNIT_SHAPES)

  it('diff = fround(checkpoint - live); the f32 codec reproduces the checkpoint bit for bit except the counted inexact elements', () => {
    const target = new Map([...live].map(([name, t]) => [name, { shape: t.shape, values: t.values.map((x, i) => x + (i % 3 === 0 ? 1e-3 * Math.sin(i) : 0)) }]))
    target.set('layer.d_one.weight', live.get('layer.d_one.weight') as any) // one unchanged tensor
    const d = weightDiff(asCheckpoint(target), live)
    // weights near 0 move by more than themselves: their float32 difference is rounded
    expect(d.inexact).to.be.within(1, 100)
    expect(d.changed).to.deep.equal(['layer.a_norm.weight', 'layer.b_proj.weight', 'layer.c_proj.weight'])
    expect(d.changedParams).to.equal(17 + 24 * 40 + 33 * 7)
    const { delta } = encodeDelta(d.diffs, { codec: 'f32' })
    expect(delta?.tensors).to.have.length(3)
    const out = applyDelta(live, delta as Delta)
    let mismatches = 0
    for (const [name, t] of target) {
      const got = out.get(name)?.values as Float32Array
      for (let i = 0; i < got.length; i++) {
        if (!Object.is(got[i], t.values[i])) {
          mismatches++
          expect(Math.abs(got[i] - t.values[i])).to.be.below(1e-9)
        }
      }
    }
    expect(mismatches).to.equal(d.inexact)
    // where every element is within a factor 2 of its target (Sterbenz), the f32 codec is exact
    const near = new Map([...live].map(([name, t]) => [name, { shape: t.shape, values: t.values.map(x => x * 1.25) }]))
    const dn = weightDiff(asCheckpoint(near), live)
    expect(dn.inexact).to.equal(0)
    const outNear = applyDelta(live, encodeDelta(dn.diffs, { codec: 'f32' }).delta as Delta)
    for (const [name, t] of near) {
      expect(Buffer.compare(bitsOf(outNear.get(name)?.values as Float32Array), bitsOf(t.values)), name).to.equal(0)
    }
  })

  it('counts elements float32 differences cannot carry exactly (far apart values)', () => {
    const w: F32Tensors = new Map([['w', { shape: [3], values: Float32Array.of(1, 2, 0.5) }]])
    const c: F32Tensors = new Map([['w', { shape: [3], values: Float32Array.of(1e-10, 2.5, 0.5) }]])
    const d = weightDiff(asCheckpoint(c), w)
    // 1e-10 - 1 rounds to -1 in float32, so 1 + d = 0, not 1e-10; 2.5 - 2 is exact
    expect(d.inexact).to.equal(1)
    expect(Array.from(d.diffs.get('w')?.values ?? [])).to.deep.equal([-1, 0.5, 0])
  })

  it('reads bf16 checkpoints exactly (upcast)', () => {
    const ck = asCheckpoint(live, 'BF16')
    const d = weightDiff(ck, live)
    const upcast = toF32Tensors(ck)
    for (const [name, t] of d.diffs) {
      const w = live.get(name)?.values as Float32Array
      const c = upcast.get(name)?.values as Float32Array
      expect(Array.from(t.values)).to.deep.equal(Array.from(c, (x, i) => Math.fround(x - w[i])))
    }
  })

  it('missing tensor, extra tensor, shape mismatch, dtype not float, non-finite: typed errors', () => {
    const ck = asCheckpoint(live)
    const without = new Map(ck)
    without.delete('layer.c_proj.weight')
    expectCode(() => weightDiff(without, live), WeightDeltaErrorCode.MISSING_TENSOR)
    const extra = new Map(ck)
    extra.set('layer.e_extra.weight', { dtype: 'F32', shape: [1], data: new Uint8Array(4) })
    expectCode(() => weightDiff(extra, live), WeightDeltaErrorCode.EXTRA_TENSOR)
    const reshaped = new Map(ck)
    reshaped.set('layer.b_proj.weight', { ...(ck.get('layer.b_proj.weight') as RawTensor), shape: [40, 24] })
    expectCode(() => weightDiff(reshaped, live), WeightDeltaErrorCode.SHAPE_MISMATCH)
    const ints = new Map(ck)
    ints.set('layer.a_norm.weight', { dtype: 'I32' as any, shape: [17], data: new Uint8Array(68) })
    expectCode(() => weightDiff(ints, live), WeightDeltaErrorCode.NOT_FLOAT)
    const nan = new Map(ck)
    nan.set('layer.a_norm.weight', { dtype: 'F32', shape: [17], data: fromFloat32(Float32Array.from({ length: 17 }, (_, i) => i === 5 ? NaN : 1), 'F32') })
    expectCode(() => weightDiff(nan, live), WeightDeltaErrorCode.NON_FINITE_INPUT)
    const overflow: F32Tensors = new Map([['w', { shape: [1], values: Float32Array.of(-3e38) }]])
    expectCode(() => weightDiff(new Map([['w', { dtype: 'F32', shape: [1], data: fromFloat32(Float32Array.of(3e38), 'F32') }]]), overflow), WeightDeltaErrorCode.NON_FINITE_INPUT)
  })
})
