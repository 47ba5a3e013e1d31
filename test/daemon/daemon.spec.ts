import { execFile } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'aegir/chai'
import { DEFAULT_IPC_MAX_LINE_BYTES } from '../../src/daemon/constants.ts'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import { IPC_METHOD_NAMES } from '../../src/protocols/ipc.ts'
import { DaemonProcess, ipcRequest, makeTempDir, mapConcurrently, removeDir, runCli, runJson, startDaemon } from './helpers.ts'
import { RawSocket } from './raw-socket.ts'

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

/** peak and current resident memory of a process, bytes (Linux /proc) */
async function memory (pid: number): Promise<{ rss: number, hwm: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) * 1024
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
  } catch {
    return undefined
  }
}

describe('daemon process', function () {
  this.timeout(120_000)
  let dir: string | undefined
  const daemons: DaemonProcess[] = []

  async function daemon (args: string[] = []): Promise<DaemonProcess> {
    const d = await startDaemon(dir ?? '', args)
    daemons.push(d)
    return d
  }

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await Promise.all(daemons.splice(0).map(async d => d.kill()))
    await removeDir(dir)
  })

  it('starts, reports status, refuses a second daemon, stops cleanly and keeps its identity', async () => {
    const dataDir = dir ?? ''
    const d = await daemon()
    // the JSON and the human form of status, side by side
    const [status, human] = await Promise.all([runJson(['status', '--data-dir', dataDir]), runCli(['status', '--data-dir', dataDir])])
    expect(status.pid).to.equal(d.pid)
    expect(status.peerId).to.match(/^12D3KooW/)
    // auto picks the best backend that starts and says why the others did not
    expect(status.backend).to.be.oneOf(['tensorflow', 'wasm', 'cpu'])
    expect(status.inference).to.include({ name: status.backend, preference: 'auto' })
    expect(status.inference.tried.at(-1)).to.deep.equal({ name: status.backend, ok: true })
    expect(status.inference.tried.slice(0, -1).every((t: { ok: boolean, reason?: string }) => !t.ok && typeof t.reason === 'string')).to.equal(true)
    expect(status.dataDir).to.equal(dataDir)
    expect(status.chain.counts).to.include({ A: 0, B: 0 })
    expect(status.uptimeMs).to.be.a('number')
    // the daemon registers exactly the methods of the typed map
    expect((await ipcRequest(d.socketPath, 'methods')).methods).to.deep.equal(IPC_METHOD_NAMES)
    expect(human.code).to.equal(0)
    expect(human.stdout).to.include(status.peerId).and.include('backend')

    expect((await stat(join(dataDir, 'blyd.sock'))).mode & 0o777).to.equal(0o600)
    expect((await stat(join(dataDir, 'identity.key'))).mode & 0o777).to.equal(0o600)
    expect(await readFile(join(dataDir, 'blyd.pid'), 'utf8')).to.equal(`${d.pid}\n`)

    const second = await runCli(['start', '--data-dir', dataDir])
    expect(second.code).to.not.equal(0)
    expect(second.stderr.trim().split('\n')).to.have.length(1)
    expect(second.stderr).to.include(`pid ${d.pid}`)
    expect(d.running).to.equal(true)

    const id = await runJson(['id', '--data-dir', dataDir])
    expect(id.peerId).to.equal(status.peerId)
    expect(id.publicKey).to.match(/^[0-9a-f]{64}$/)

    const stop = await runCli(['stop', '--data-dir', dataDir])
    expect(stop.code).to.equal(0)
    expect(stop.stdout).to.include(`pid ${d.pid}`)
    expect(await d.exited).to.deep.equal({ code: 0, signal: null })
    expect(await exists(join(dataDir, 'blyd.sock'))).to.equal(false)
    expect(await exists(join(dataDir, 'blyd.pid'))).to.equal(false)

    const again = await daemon()
    expect((await runJson(['id', '--data-dir', dataDir])).peerId).to.equal(status.peerId)
    expect((await stat(join(dataDir, 'identity.key'))).mode & 0o777).to.equal(0o600)
    await again.kill('SIGINT')
    expect((await again.exited).code).to.equal(0)
  })

  it('cleans up socket and pid file on SIGTERM and exits 0', async () => {
    const dataDir = dir ?? ''
    const d = await daemon()
    d.child.kill('SIGTERM')
    expect(await d.exited).to.deep.equal({ code: 0, signal: null })
    expect(await exists(join(dataDir, 'blyd.sock'))).to.equal(false)
    expect(await exists(join(dataDir, 'blyd.pid'))).to.equal(false)
    expect(d.stderr).to.include('daemon.stopped')
  })

  it('stops cleanly on SIGTERM while a put is streaming in, leaving no trace of it', async () => {
    const dataDir = dir ?? ''
    const d = await daemon()
    const fifo = join(dataDir, 'slow.fifo')
    await promisify(execFile)('mkfifo', [fifo])
    const client = await IpcClient.connect({ socketPath: d.socketPath })
    const put = client.request('chain.put', { payload: fifo }).then(() => undefined, (err: Error) => err)
    const writer = createWriteStream(fifo)
    writer.on('error', () => {})
    await new Promise<void>(resolve => writer.write(Buffer.alloc(6 * 1024 * 1024, 1), () => { resolve() }))
    d.child.kill('SIGTERM')
    expect(await d.exited).to.deep.equal({ code: 0, signal: null })
    writer.destroy()
    expect(await put).to.be.instanceOf(Error)
    client.close()
    expect(await exists(join(dataDir, 'blyd.sock'))).to.equal(false)
    expect(await exists(join(dataDir, 'blyd.pid'))).to.equal(false)
    const report = await runJson(['chain', 'verify', '--data-dir', dataDir])
    expect(report).to.include({ ok: true, blocks: 0 })
  })

  it('refuses an identity key with wider permissions, in one line', async () => {
    const dataDir = dir ?? ''
    const d = await daemon()
    await d.kill('SIGTERM')
    await chmod(join(dataDir, 'identity.key'), 0o644)
    const r = await runCli(['start', '--data-dir', dataDir])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.include('identity.key has mode 0644')
    expect(r.stderr).to.not.match(/^\s+at /m)
    expect(await exists(join(dataDir, 'blyd.pid'))).to.equal(false)
  })

  it('answers malformed JSON-RPC with the right codes, survives a 100 MiB line, and keeps serving', async () => {
    const d = await daemon()
    const raw = await RawSocket.connect(d.socketPath)
    try {
      expect((await raw.call('{"jsonrpc": "2.0", "id": 1, "method": "status"')).error.code).to.equal(-32700)
      expect((await raw.call('{"jsonrpc":"2.0","id":2}')).error.code).to.equal(-32600)
      const unknown = await raw.call('{"jsonrpc":"2.0","id":3,"method":"no.such.method"}')
      expect(unknown).to.deep.include({ id: 3 })
      expect(unknown.error.code).to.equal(-32601)
      expect((await raw.call('{"jsonrpc":"2.0","id":4,"method":"chain.get","params":{"id":"xyz"}}')).error.code).to.equal(-32602)
      expect((await raw.call('{"jsonrpc":"2.0","id":5,"method":"status","params":{"verbose":true}}')).error.code).to.equal(-32602)
      expect((await raw.call('{"jsonrpc":"2.0","id":6,"method":"chain.put","params":{"payload":"relative/file"}}')).error.code).to.equal(-32602)
      const missing = await raw.call('{"jsonrpc":"2.0","id":7,"method":"chain.put","params":{"payload":"/nonexistent/blyd-payload"}}')
      expect(missing.error.code).to.equal(-32603)
      expect(missing.error.data.code).to.equal('ERR_PAYLOAD')
      const notFound = await raw.call(`{"jsonrpc":"2.0","id":8,"method":"chain.get","params":{"id":"${'ab'.repeat(32)}"}}`)
      expect(notFound.error.code).to.equal(-32603)
      expect(notFound.error.data.code).to.equal('ERR_NOT_FOUND')

      // 100 MiB on one line, sent in 1 MiB pieces: answered once, dropped without buffering it
      const before = await memory(d.pid)
      await raw.write('{"jsonrpc":"2.0","id":9,"method":"status","params":{"pad":"')
      const piece = Buffer.alloc(1024 * 1024, 0x61)
      for (let i = 0; i < 100; i++) {
        await raw.write(piece)
      }
      await raw.write('"}}\n')
      const long = await raw.next()
      expect(long.id).to.equal(null)
      expect(long.error.code).to.equal(-32600)
      expect(long.error.data.code).to.equal('ERR_IPC_LINE_TOO_LONG')
      const after = await memory(d.pid)
      if (before != null && after != null) {
        // peak RSS grew by less than the line: holding it (its pieces, then their concatenation)
        // would take 200 MiB; the rest is 1 MiB socket reads the GC collects late
        expect(after.hwm - before.rss).to.be.below(96 * 1024 * 1024)
      }
      const status = await raw.call('{"jsonrpc":"2.0","id":10,"method":"status"}')
      // what the daemon itself held of the line: never more than the cap
      expect(status.result.ipc.peakLineBytes).to.be.greaterThan(0).and.at.most(DEFAULT_IPC_MAX_LINE_BYTES)
      expect(status.id).to.equal(10)
      expect(status.result.pid).to.equal(d.pid)
      expect(status.result.ipc.errors['-32700']).to.equal(1)
      expect(status.result.ipc.errors['-32600']).to.equal(2)
    } finally {
      raw.close()
    }
    // other connections are served too
    expect((await ipcRequest(d.socketPath, 'status')).pid).to.equal(d.pid)
    const { text } = await ipcRequest(d.socketPath, 'metrics')
    expect(text).to.include('blyd_ipc_errors_total{rpc_code="-32601",code=""} 1')
    expect(text).to.match(/blyd_ipc_requests_total\{method="status"\} \d+/)
    expect(text).to.include('blyd_chain_blocks{chain="A"} 0')
  })

  it('puts blocks from files and reads them back through the daemon', async () => {
    const dataDir = dir ?? ''
    await daemon()
    const file = join(dataDir, 'note.txt')
    await writeFile(file, 'hello chain\n')
    const first = await runJson(['chain', 'put', '--payload', file, '--data-dir', dataDir])
    expect(first.id).to.match(/^[0-9a-f]{64}$/)
    const plain = await runCli(['chain', 'put', '--payload', file, '--data-dir', dataDir])
    expect(plain.code).to.equal(0)
    const second = plain.stdout.trim()
    const out = join(dataDir, 'out.txt')
    // read-only queries to the daemon: two at a time
    const [block, tips, got, report] = await mapConcurrently([
      ['chain', 'get', second],
      ['chain', 'tips'],
      ['chain', 'get', second.toUpperCase(), '--payload-out', out],
      ['chain', 'verify']
    ], async args => runJson([...args, '--data-dir', dataDir]))
    expect(block).to.include({ id: second, chain: 'A', type: 'note', payloadSize: '12' })
    expect(block.parents).to.deep.equal([first.id])
    expect(tips).to.deep.equal({ A: [second], B: [] })
    expect(got.id).to.equal(second)
    expect(await readFile(out, 'utf8')).to.equal('hello chain\n')
    expect(report).to.include({ ok: true, blocks: 2 })
  })
})
