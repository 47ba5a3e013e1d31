import { expect } from 'aegir/chai'
import { BlydError, isErrorCode } from '../../src/protocols/errors.ts'

describe('errors', () => {
  it('carries a code', () => {
    const err = new BlydError('ERR_X', 'x happened')
    expect(isErrorCode(err, 'ERR_X')).to.equal(true)
    expect(isErrorCode(new Error('y'), 'ERR_X')).to.equal(false)
  })
})
