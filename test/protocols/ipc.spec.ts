import { expect } from 'aegir/chai'
import { IPC_METHOD_NAMES, IPC_STREAM_METHOD, JSONRPC_VERSION, RpcErrorCode } from '../../src/protocols/ipc.ts'

describe('protocols/ipc', () => {
  it('names every method once, sorted, none reserved (stream, rpc.*)', () => {
    expect(IPC_METHOD_NAMES).to.deep.equal([...new Set(IPC_METHOD_NAMES)].sort())
    expect(IPC_METHOD_NAMES).to.include.members(['status', 'chain.put', 'model.import', 'generate', 'data.add', 'net.status', 'plan'])
    for (const name of IPC_METHOD_NAMES) {
      expect(name).to.match(/^[a-z]+(\.[a-z]+)?$/)
      expect(name).to.not.equal(IPC_STREAM_METHOD)
      expect(name.startsWith('rpc.')).to.equal(false)
    }
    expect(Object.isFrozen(IPC_METHOD_NAMES)).to.equal(true)
  })

  it('speaks JSON-RPC 2.0 with its standard error codes', () => {
    expect(JSONRPC_VERSION).to.equal('2.0')
    expect(RpcErrorCode).to.include({
      PARSE_ERROR: -32700,
      INVALID_REQUEST: -32600,
      METHOD_NOT_FOUND: -32601,
      INVALID_PARAMS: -32602,
      INTERNAL_ERROR: -32603
    })
  })
})
