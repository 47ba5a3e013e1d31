import { expect } from 'aegir/chai'
import * as chainErrors from '../../src/chain/errors.ts'
import * as netErrors from '../../src/net/errors.ts'
import * as recordErrors from '../../src/net/records/errors.ts'
import * as pipelineErrors from '../../src/pipeline/errors.ts'
import { decodeBlockHeader } from '../../src/protocols/block-header.ts'
import { decodeSyncFrame } from '../../src/protocols/block-sync.ts'
import { ChainError, ChainErrorCode } from '../../src/protocols/chain-errors.ts'
import { BlydError, isErrorCode } from '../../src/protocols/errors.ts'
import { decodeInferFrame } from '../../src/protocols/infer.ts'
import { NetError, NetErrorCode } from '../../src/protocols/net-errors.ts'
import { decodeNodeRecord } from '../../src/protocols/node-record.ts'
import { PipelineError, PipelineErrorCode } from '../../src/protocols/pipeline-errors.ts'
import { RecordError, RecordErrorCode } from '../../src/protocols/record-errors.ts'

function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  expect.fail('expected a throw')
}

describe('protocols/errors', () => {
  it('carries a code', () => {
    const err = new BlydError('ERR_X', 'x happened')
    expect(isErrorCode(err, 'ERR_X')).to.equal(true)
    expect(isErrorCode(new Error('y'), 'ERR_X')).to.equal(false)
  })

  it('the parts re-export the very classes and code tables the codecs use', () => {
    expect(chainErrors.ChainError).to.equal(ChainError)
    expect(chainErrors.ChainErrorCode).to.equal(ChainErrorCode)
    expect(netErrors.NetError).to.equal(NetError)
    expect(netErrors.NetErrorCode).to.equal(NetErrorCode)
    expect(recordErrors.RecordError).to.equal(RecordError)
    expect(recordErrors.RecordErrorCode).to.equal(RecordErrorCode)
    expect(pipelineErrors.PipelineError).to.equal(PipelineError)
    expect(pipelineErrors.PipelineErrorCode).to.equal(PipelineErrorCode)
  })

  it('a codec\'s error is an instance of its part\'s class, with the part\'s code and name', () => {
    const cases: Array<[unknown, new (...args: any[]) => Error, string, string]> = [
      [thrown(() => decodeBlockHeader(new Uint8Array([0xff]))), chainErrors.ChainError, 'ChainError', 'ERR_BLOCK_ENCODING'],
      [thrown(() => decodeSyncFrame(new Uint8Array([0x08]))), netErrors.NetError, 'NetError', 'ERR_SYNC_BAD_MESSAGE'],
      [thrown(() => decodeNodeRecord(new Uint8Array([0xff]))), recordErrors.RecordError, 'RecordError', 'ERR_RECORD_ENCODING'],
      [thrown(() => decodeInferFrame(new Uint8Array(0))), pipelineErrors.PipelineError, 'PipelineError', 'ERR_INFER_BAD_FRAME']
    ]
    for (const [err, cls, name, code] of cases) {
      expect(err).to.be.an.instanceOf(cls)
      expect(err).to.be.an.instanceOf(BlydError)
      expect(err).to.have.property('name', name)
      expect(err).to.have.property('code', code)
    }
  })
})
