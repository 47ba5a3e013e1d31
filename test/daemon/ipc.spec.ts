import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { InvalidParamsError, IpcRemoteError } from '../../src/daemon/errors.ts'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import { IpcServer } from '../../src/daemon/ipc-server.ts'
import { objectParams, requiredString } from '../../src/daemon/params.ts'
import { BlydError } from '../../src/protocols/errors.ts'
import { makeTempDir, removeDir } from './helpers.ts'
import { RawSocket } from './raw-socket.ts'
import type { IpcMethod } from '../../src/protocols/ipc.ts'

/** The methods this bare server registers (a daemon's are IpcMethods). */
interface TestMethods {
  echo: IpcMethod<{ text: string }, { text: string }>
  count: IpcMethod<{ to: number }, { done: number }, { n: number }>
  fail: IpcMethod<Record<string, never>, never>
  crash: IpcMethod<Record<string, never>, never>
  slow: IpcMethod<{ n: number }, { n: number }>
}

const echoParams = objectParams<{ text: string }>({ text: requiredString })

describe('IPC server and client', () => {
  let dir: string
  let server: IpcServer<TestMethods>
  const errors: Array<[number, string | undefined]> = []
  const slow = { running: 0, peak: 0 }

  before(async () => {
    dir = await makeTempDir()
    server = new IpcServer<TestMethods>({
      socketPath: join(dir, 't.sock'),
      maxLineBytes: 1024,
      onError: (rpc, code) => { errors.push([rpc, code]) }
    })
    server.register('echo', echoParams, ({ text }) => ({ text }))
    server.register('count', objectParams<{ to: number }>({
      to: (v) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
          throw new InvalidParamsError('"to" must be a non-negative integer')
        }
        return v
      }
    }), async ({ to }, context) => {
      for (let i = 0; i < to; i++) {
        await context.notify({ n: i })
      }
      return { done: to }
    })
    server.register('fail', () => ({}), () => { throw new BlydError('ERR_SOMETHING', 'something broke') })
    server.register('crash', () => ({}), () => { throw new TypeError('oops') })
    server.register('slow', objectParams<{ n: number }>({ n: v => v as number }), async ({ n }) => {
      slow.running++
      slow.peak = Math.max(slow.peak, slow.running)
      await new Promise(resolve => setTimeout(resolve, 5))
      slow.running--
      return { n }
    })
    await server.start()
  })

  after(async () => {
    await server.stop()
    await removeDir(dir)
  })

  it('refuses to register a method twice', () => {
    expect(() => { server.register('echo', echoParams, ({ text }) => ({ text })) }).to.throw(/already registered/)
  })

  it('streams notifications before the final response', async () => {
    const client = await IpcClient.connect<TestMethods>({ socketPath: server.socketPath })
    try {
      const seen: number[] = []
      const result = await client.request('count', { to: 5 }, { onStream: p => { seen.push(p.n) } })
      expect(seen).to.deep.equal([0, 1, 2, 3, 4])
      expect(result).to.deep.equal({ done: 5 })
      // concurrent requests on one connection keep their own streams
      const a: number[] = []
      const b: number[] = []
      await Promise.all([
        client.request('count', { to: 3 }, { onStream: p => { a.push(p.n) } }),
        client.request('count', { to: 4 }, { onStream: p => { b.push(p.n) } })
      ])
      expect(a).to.deep.equal([0, 1, 2])
      expect(b).to.deep.equal([0, 1, 2, 3])
    } finally {
      client.close()
    }
  })

  it('answers each kind of bad input with its JSON-RPC code and keeps serving', async () => {
    const raw = await RawSocket.connect(server.socketPath)
    try {
      expect((await raw.call('{"jsonrpc":"2.0",')).error.code).to.equal(-32700)
      expect((await raw.call('42')).error.code).to.equal(-32600)
      expect((await raw.call('{"jsonrpc":"1.0","id":1,"method":"echo"}'))).to.deep.include({ id: 1 }).and.have.nested.property('error.code', -32600)
      expect((await raw.call('{"jsonrpc":"2.0","id":{},"method":"echo"}')).error.code).to.equal(-32600)
      expect((await raw.call('{"jsonrpc":"2.0","id":2,"method":"nope"}')).error).to.deep.include({ code: -32601 })
      const bad = await raw.call('{"jsonrpc":"2.0","id":3,"method":"echo","params":{"text":7}}')
      expect(bad.id).to.equal(3)
      expect(bad.error.code).to.equal(-32602)
      expect(bad.error.message).to.include('"text"')
      expect((await raw.call('{"jsonrpc":"2.0","id":4,"method":"echo","params":{"text":"a","x":1}}')).error.code).to.equal(-32602)
      const failed = await raw.call('{"jsonrpc":"2.0","id":5,"method":"fail"}')
      expect(failed.error).to.deep.equal({ code: -32603, message: 'something broke', data: { code: 'ERR_SOMETHING' } })
      const crashed = await raw.call('{"jsonrpc":"2.0","id":6,"method":"crash"}')
      expect(crashed.error.code).to.equal(-32603)
      expect(crashed.error.data.code).to.equal('ERR_INTERNAL')
      // a notification gets no answer; the next request does
      await raw.write('{"jsonrpc":"2.0","method":"echo","params":{"text":"quiet"}}\n')
      expect(await raw.call('{"jsonrpc":"2.0","id":"s","method":"echo","params":{"text":"hi"}}')).to.deep.equal({ jsonrpc: '2.0', id: 's', result: { text: 'hi' } })
      // batches
      const batch = await raw.call('[{"jsonrpc":"2.0","id":7,"method":"echo","params":{"text":"b"}},{"jsonrpc":"2.0","id":8,"method":"nope"}]')
      expect(batch).to.have.length(2)
      expect(batch[0].result).to.deep.equal({ text: 'b' })
      expect(batch[1].error.code).to.equal(-32601)
      // an overlong line (limit 1024 here) is answered and skipped
      const long = await raw.call(`{"jsonrpc":"2.0","id":9,"method":"echo","params":{"text":"${'x'.repeat(5000)}"}}`)
      expect(long.error.code).to.equal(-32600)
      expect(long.error.data.code).to.equal('ERR_IPC_LINE_TOO_LONG')
      expect((await raw.call('{"jsonrpc":"2.0","id":10,"method":"echo","params":{"text":"after"}}')).result).to.deep.equal({ text: 'after' })
    } finally {
      raw.close()
    }
    expect(server.stats().errors['-32700']).to.be.at.least(1)
    expect(errors.some(([rpc, code]) => rpc === -32603 && code === 'ERR_SOMETHING')).to.equal(true)
  })

  it('runs the calls of a batch with bounded concurrency, answering in order', async () => {
    const raw = await RawSocket.connect(server.socketPath)
    try {
      // 16 calls (the line cap of this server is 1024 bytes)
      const calls = Array.from({ length: 16 }, (_, i) => `{"jsonrpc":"2.0","id":${i},"method":"slow","params":{"n":${i}}}`)
      const answers = await raw.call(`[${calls.join(',')}]`)
      expect(answers.map((a: any) => a.result.n)).to.deep.equal(Array.from({ length: 16 }, (_, i) => i))
      expect(slow.peak).to.equal(server.limits.batchConcurrency).and.equal(8)
      // one element more than the cap is refused whole, before parsing
      const refused = await raw.call(`[${new Array(server.limits.maxBatch + 1).fill(1).join(',')}]`)
      expect(refused.error.data).to.deep.equal({ code: 'ERR_IPC_BATCH_TOO_LARGE', maxBatch: 100 })
      const atCap = await raw.call(`[${new Array(server.limits.maxBatch).fill(1).join(',')}]`)
      expect(atCap).to.have.length(100)
      expect(atCap[0].error.code).to.equal(-32600)
    } finally {
      raw.close()
    }
    expect(server.stats().refused.batches).to.equal(1)
  })

  it('refuses a shared line budget smaller than one line', () => {
    expect(() => new IpcServer({ socketPath: join(dir, 'x.sock'), maxLineBytes: 4096, maxBufferedLineBytes: 4095 })).to.throw(/at least maxLineBytes/)
  })

  it('turns error responses into IpcRemoteError with the daemon code', async () => {
    const client = await IpcClient.connect<TestMethods>({ socketPath: server.socketPath })
    try {
      await client.request('fail')
      expect.fail('no error')
    } catch (err) {
      expect(err).to.be.instanceOf(IpcRemoteError)
      expect((err as IpcRemoteError).code).to.equal('ERR_SOMETHING')
      expect((err as IpcRemoteError).rpcCode).to.equal(-32603)
    } finally {
      client.close()
    }
  })
})
