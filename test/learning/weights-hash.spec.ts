import { createHash } from 'node:crypto'
import { expect } from 'aegir/chai'
import { WeightsHasher, weightsHash } from '../../src/learning/weights-hash.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'

const tensors = (entries: Array<[string, number[], number[]]>): F32Tensors =>
  new Map(entries.map(([name, shape, values]) => [name, { shape, values: Float32Array.from(values) }]))

describe('learning/weights-hash', () => {
  it('is sha256 of the documented bytes (built by hand here)', () => {
    const unit3 = tensors([['b', [2], [1, -2]], ['a', [1, 1], [0.5]]])
    const unit7 = tensors([['c', [1], [-0]]])
    // "bly/weights/v1", unit 3 (2 tensors: a then b), unit 7 (1 tensor)
    const hex = [
      Buffer.from('bly/weights/v1').toString('hex'),
      '03000000', '02000000',
      '0100', '61', '02', '01000000', '01000000', '0000003f', // a [1, 1] 0.5
      '0100', '62', '01', '02000000', '0000803f', '000000c0', // b [2] 1, -2
      '07000000', '01000000',
      '0100', '63', '01', '01000000', '00000080' // c [1] -0
    ].join('')
    const expected = createHash('sha256').update(Buffer.from(hex, 'hex')).digest()
    expect(Buffer.from(weightsHash([{ unit: 3, tensors: unit3 }, { unit: 7, tensors: unit7 }]))).to.deep.equal(expected)
  })

  it('does not depend on map order; -0 and +0 differ; units must ascend', () => {
    const a = weightsHash([{ unit: 1, tensors: tensors([['x', [1], [1]], ['y', [1], [2]]]) }])
    const b = weightsHash([{ unit: 1, tensors: tensors([['y', [1], [2]], ['x', [1], [1]]]) }])
    expect(a).to.deep.equal(b)
    expect(weightsHash([{ unit: 1, tensors: tensors([['x', [1], [0]]]) }])).to.not.deep.equal(weightsHash([{ unit: 1, tensors: tensors([['x', [1], [-0]]]) }]))
    // the same values under another shape hash differently
    expect(weightsHash([{ unit: 1, tensors: tensors([['x', [2], [1, 2]]]) }])).to.not.deep.equal(weightsHash([{ unit: 1, tensors: tensors([['x', [1, 2], [1, 2]]]) }]))
    const h = new WeightsHasher().addUnit(2, new Map())
    expect(() => h.addUnit(2, new Map())).to.throw(RangeError)
    expect(() => h.addUnit(1, new Map())).to.throw(RangeError)
  })
})
