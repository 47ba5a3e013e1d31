/**
 * The IPC server's memory bounds against a real daemon (issue 16, item 2):
 * each abusive load is refused or paused by a limit the daemon reports in
 * `status.ipc` and `metrics`, and the daemon's resident memory grows by less
 * than a stated bound (VmHWM since the load began, minus VmRSS then). Other
 * connections keep being served throughout.
 */
import { createConnection } from 'node:net'
import { expect } from 'aegir/chai'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import { makeTempDir, pollUntil, removeDir, rssGrowth, startDaemon } from './helpers.ts'
import { RawSocket } from './raw-socket.ts'
import type { DaemonProcess } from './helpers.ts'
import type { Socket } from 'node:net'

const MiB = 1024 * 1024
/** the stated bounds of RSS growth (README, reliability): pipelined, batch, deep and connection loads */
const RSS_BOUND = 64 * MiB
/**
 * ... and many unfinished lines held at once: the 32 MiB budget, plus the read
 * buffers and dropped lines that wait for a GC (V8 collects once external
 * memory grew by about 64 MiB)
 */
const RSS_BOUND_LINES = 128 * MiB

/** the documented defaults (README): connections held at once, bytes of unfinished lines over all of them */
const MAX_CONNECTIONS = 128
const MAX_BUFFERED_LINE_BYTES = 32 * MiB

const statusLine = (id: number): string => `{"jsonrpc":"2.0","id":${id},"method":"status"}`

/** every socket a test opened, destroyed after it */
const opened: Socket[] = []

async function connect (path: string): Promise<Socket> {
  const socket = createConnection(path)
  opened.push(socket)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  return socket
}

/** write, waiting for drain; false when the socket closed first */
async function write (socket: Socket, data: string | Buffer): Promise<boolean> {
  if (socket.destroyed) {
    return false
  }
  if (socket.write(data)) {
    return true
  }
  return new Promise(resolve => {
    const onDrain = (): void => { socket.off('close', onClose); resolve(true) }
    const onClose = (): void => { socket.off('drain', onDrain); resolve(false) }
    socket.once('drain', onDrain)
    socket.once('close', onClose)
  })
}

/** the lines a socket received, collected as they come */
function received (socket: Socket): { lines: string[], closed: boolean } {
  const seen = { lines: [] as string[], closed: false }
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (s: string) => {
    text += s
    let nl
    while ((nl = text.indexOf('\n')) !== -1) {
      seen.lines.push(text.slice(0, nl))
      text = text.slice(nl + 1)
    }
  })
  socket.on('close', () => { seen.closed = true })
  return seen
}

describe('IPC limits of a daemon', function () {
  this.timeout(180_000)
  let dir: string
  let daemon: DaemonProcess
  let control: IpcClient

  const status = async (): Promise<any> => control.request('status')
  /** the value of one metrics sample line, or undefined */
  const metric = async (sample: string): Promise<number | undefined> => {
    const { text } = await control.request('metrics')
    const line = text.split('\n').find(l => l.startsWith(sample + ' '))
    return line == null ? undefined : Number(line.slice(sample.length + 1))
  }
  /**
   * wait until only the control connection is left and nothing is paused or
   * buffered (each test asserts what it needs: a failing hook would skip the rest)
   */
  const settle = async (): Promise<void> => {
    await pollUntil(status, s => s.ipc.connections === 1 && s.ipc.pausedConnections === 0 && s.ipc.bufferedLineBytes === 0, 10_000)
  }

  const rawSocket = async (): Promise<RawSocket> => {
    const raw = await RawSocket.connect(daemon.socketPath)
    opened.push(raw.socket)
    return raw
  }

  before(async () => {
    dir = await makeTempDir()
    daemon = await startDaemon(dir, ['--backend', 'cpu'])
    control = await IpcClient.connect({ socketPath: daemon.socketPath })
    for (let i = 0; i < 50; i++) {
      await status()
    }
  })

  afterEach(async () => {
    for (const s of opened.splice(0)) {
      s.destroy()
    }
    await settle()
  })

  after(async () => {
    control?.close()
    await daemon?.kill()
    await removeDir(dir)
  })

  it('stops reading a connection whose answers are not read: 100,000 pipelined status requests', async () => {
    const before = await status()
    const growth = await rssGrowth(daemon.pid)
    const raw = await rawSocket()
    raw.socket.pause()
    const flood = Array.from({ length: 100_000 }, (_, i) => statusLine(i)).join('\n') + '\n'
    expect(Buffer.byteLength(flood)).to.be.above(4 * MiB)
    raw.socket.write(flood)
    // the daemon answers until the answers it queued pass the high-water mark, then stops reading
    const paused = await pollUntil(status, s => s.ipc.pausedConnections === 1 && s.ipc.backpressurePauses > before.ipc.backpressurePauses)
    const grew = await growth()
    expect(grew, 'RSS growth').to.be.below(RSS_BOUND)
    const { limits } = paused.ipc
    expect(paused.ipc.pausedConnections).to.equal(1)
    expect(paused.ipc.backpressurePauses - before.ipc.backpressurePauses).to.equal(1)
    // the answers queued past the mark: the calls already in flight, a status answer is < 4 KiB
    expect(paused.ipc.peakWriteBytes).to.be.above(limits.writeHighWaterBytes).and.at.most(limits.writeHighWaterBytes + limits.maxInflightPerConnection * 4096)
    const served = paused.ipc.requests - before.ipc.requests
    expect(served).to.be.below(100_000 / 10)
    // it stays paused: more status calls from the control connection are all it serves
    const later = await status()
    expect(later.ipc.requests - paused.ipc.requests).to.equal(1)
    expect(await metric('blyd_ipc_backpressure_pauses_total')).to.equal(later.ipc.backpressurePauses)
    expect(await metric('blyd_ipc_paused_connections')).to.equal(1)
    raw.close()
  })

  it('reads a paused connection again once its answers are read, and loses none', async () => {
    const before = await status()
    const raw = await rawSocket()
    raw.socket.pause()
    const n = 30_000
    raw.socket.write(Array.from({ length: n }, (_, i) => `{"jsonrpc":"2.0","id":${i},"method":"id"}`).join('\n') + '\n')
    const paused = await pollUntil(status, s => s.ipc.pausedConnections === 1)
    expect(paused.ipc.pausedConnections).to.equal(1)
    expect(paused.ipc.requests - before.ipc.requests).to.be.below(n)
    raw.socket.resume()
    const ids = new Set<number>()
    for (let i = 0; i < n; i++) {
      const m = await raw.next()
      expect(m.result?.peerId).to.be.a('string')
      ids.add(m.id)
    }
    expect(ids.size).to.equal(n)
    const after = await status()
    expect(after.ipc.backpressurePauses).to.be.above(before.ipc.backpressurePauses)
    expect(after.ipc.pausedConnections).to.equal(0)
    raw.close()
  })

  it('answers a batch over the cap with one error before running any call; runs a batch at the cap', async () => {
    const before = await status()
    const growth = await rssGrowth(daemon.pid)
    const raw = await rawSocket()
    try {
      const refused = await raw.call('[' + Array.from({ length: 50_000 }, (_, i) => statusLine(i)).join(',') + ']')
      expect(refused).to.not.be.an('array')
      expect(refused.id).to.equal(null)
      expect(refused.error.code).to.equal(-32600)
      expect(refused.error.data).to.deep.equal({ code: 'ERR_IPC_BATCH_TOO_LARGE', maxBatch: 100 })
      expect(await growth(), 'RSS growth').to.be.below(RSS_BOUND)
      const mid = await status()
      expect(mid.ipc.refused.batches - before.ipc.refused.batches).to.equal(1)
      // no call of it ran: the control connection's status is the only request since
      expect(mid.ipc.requests - before.ipc.requests).to.equal(1)
      const full = await raw.call('[' + Array.from({ length: 100 }, (_, i) => statusLine(i)).join(',') + ']')
      expect(full).to.have.length(100)
      expect(full.map((r: any) => r.id)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i))
      expect(full.every((r: any) => r.result?.pid === daemon.pid)).to.equal(true)
      expect(await metric('blyd_ipc_refusals_total{reason="batches"}')).to.equal(mid.ipc.refused.batches)
    } finally {
      raw.close()
    }
  })

  it('rejects nesting past the depth before parsing it: an 8-million-deep array', async () => {
    const before = await status()
    const growth = await rssGrowth(daemon.pid)
    const raw = await rawSocket()
    try {
      const depth = 8_000_000
      const line = Buffer.alloc(2 * depth + 1)
      line.fill(0x5b, 0, depth)
      line.fill(0x5d, depth, 2 * depth)
      line[2 * depth] = 0x0a
      await raw.write(line)
      const deep = await raw.next()
      expect(deep.id).to.equal(null)
      expect(deep.error.code).to.equal(-32600)
      expect(deep.error.data).to.deep.equal({ code: 'ERR_IPC_TOO_DEEP', maxDepth: 64 })
      expect(await growth(), 'RSS growth').to.be.below(RSS_BOUND)
      // 64 levels are parsed (status takes no params: -32602); 65 are refused unparsed
      const nested = (arrays: number): string => `{"jsonrpc":"2.0","id":2,"method":"status","params":{"x":${'['.repeat(arrays)}${']'.repeat(arrays)}}}`
      expect((await raw.call(nested(62))).error.code).to.equal(-32602)
      expect((await raw.call(nested(63))).error.data.code).to.equal('ERR_IPC_TOO_DEEP')
      // brackets inside strings are not nesting
      expect((await raw.call(`{"jsonrpc":"2.0","id":3,"method":"chain.get","params":{"id":"${'['.repeat(100)}"}}`)).error.code).to.equal(-32602)
      // a long line is parsed on its turn and answered
      expect(await raw.call(`{"jsonrpc":"2.0","id":4,"method":"status","params":{"pad":"${'a'.repeat(2 * MiB)}"}}`)).to.deep.include({ id: 4 }).and.have.nested.property('error.code', -32602)
      const after = await status()
      expect(after.ipc.refused.depth - before.ipc.refused.depth).to.equal(2)
      expect(await metric('blyd_ipc_refusals_total{reason="depth"}')).to.equal(after.ipc.refused.depth)
    } finally {
      raw.close()
    }
  })

  it('rejects a line of too many values before parsing it: 16 MB of empty objects', async () => {
    const before = await status()
    const growth = await rssGrowth(daemon.pid)
    const raw = await rawSocket()
    try {
      const n = 5_000_000
      const wide = await raw.call(`{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":[${'{},'.repeat(n)}{}]}}`)
      expect(wide.id).to.equal(null)
      expect(wide.error.code).to.equal(-32600)
      expect(wide.error.data).to.deep.equal({ code: 'ERR_IPC_TOO_MANY_VALUES', maxValues: 262_144 })
      expect(await growth(), 'RSS growth').to.be.below(RSS_BOUND)
      // a line under the cap is parsed (status takes no params: -32602)
      expect((await raw.call(`{"jsonrpc":"2.0","id":2,"method":"status","params":{"a":[${'0,'.repeat(200_000)}0]}}`)).error.code).to.equal(-32602)
      const after = await status()
      expect(after.ipc.refused.values - before.ipc.refused.values).to.equal(1)
      expect(await metric('blyd_ipc_refusals_total{reason="values"}')).to.equal(after.ipc.refused.values)
    } finally {
      raw.close()
    }
  })

  it('refuses connections past the cap with an error line, and serves the ones it holds', async () => {
    const before = await status()
    const maxConnections = MAX_CONNECTIONS
    const growth = await rssGrowth(daemon.pid)
    const sockets: Socket[] = []
    const socketPath = daemon.socketPath
    for (let i = 0; i < 200; i += 25) {
      sockets.push(...await Promise.all(Array.from({ length: 25 }, async () => connect(socketPath))))
    }
    const seen = sockets.map(received)
    const over = 200 - (maxConnections - 1)
    // a status read before the last refusals can come back after the client saw them close:
    // wait for a status that counts them too (the equalities below still bound it from above)
    const full = await pollUntil(status, s => seen.filter(x => x.closed).length >= over && s.ipc.refused.connections - before.ipc.refused.connections >= over, 10_000)
    expect(full.ipc.connections).to.equal(maxConnections)
    expect(full.ipc.limits.maxConnections).to.equal(maxConnections)
    expect(full.ipc.refused.connections - before.ipc.refused.connections).to.equal(over)
    const refused = seen.filter(s => s.closed)
    expect(refused).to.have.length(over)
    for (const s of refused) {
      expect(s.lines).to.have.length(1)
      const e = JSON.parse(s.lines[0])
      expect(e.error.code).to.equal(-32000)
      expect(e.error.data).to.deep.equal({ code: 'ERR_IPC_TOO_MANY_CONNECTIONS', maxConnections })
    }
    // a held connection is served
    const k = seen.findIndex(s => !s.closed)
    sockets[k].write(statusLine(7) + '\n')
    const answered = await pollUntil(async () => seen[k].lines, lines => lines.length > 0)
    expect(JSON.parse(answered[0]).id).to.equal(7)
    expect(await growth(), 'RSS growth').to.be.below(RSS_BOUND)
    expect(await metric('blyd_ipc_refusals_total{reason="connections"}')).to.equal(full.ipc.refused.connections)
    for (const s of sockets) {
      s.destroy()
    }
    await settle()
    expect((await status()).ipc.connections).to.equal(1)
    // and once they are gone a new client is served again
    const client = await IpcClient.connect({ socketPath: daemon.socketPath })
    try {
      expect((await client.request<any>('status')).pid).to.equal(daemon.pid)
    } finally {
      client.close()
    }
  })

  it('caps the unfinished-line bytes over all connections: 20 connections sending 15 MiB each', async () => {
    const before = await status()
    const maxBufferedLineBytes = MAX_BUFFERED_LINE_BYTES
    const growth = await rssGrowth(daemon.pid)
    const sockets = await Promise.all(Array.from({ length: 20 }, async () => connect(daemon.socketPath)))
    const seen = sockets.map(received)
    const piece = Buffer.alloc(MiB, 0x61)
    await Promise.all(sockets.map(async s => {
      if (await write(s, '{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"')) {
        for (let i = 0; i < 15; i++) {
          if (!await write(s, piece)) {
            return
          }
        }
      }
    }))
    // held: whatever fits the budget; each connection past it got an error line and was closed
    const refusedSince = (s: any): number => (s.ipc.refused?.lines ?? 0) - (before.ipc.refused?.lines ?? 0)
    const held = await pollUntil(status, s => refusedSince(s) >= 18 && s.ipc.connections === 1 + 20 - refusedSince(s) && seen.filter(x => x.closed).length === refusedSince(s))
    const grew = await growth()
    expect(grew, 'RSS growth').to.be.below(RSS_BOUND_LINES)
    // 2 lines of 15 MiB fit in 32 MiB: the other 18 connections were refused
    const refused = refusedSince(held)
    expect(refused).to.be.at.least(18)
    expect(held.ipc.limits.maxBufferedLineBytes).to.equal(maxBufferedLineBytes)
    expect(held.ipc.peakBufferedLineBytes).to.be.at.most(maxBufferedLineBytes)
    expect(held.ipc.bufferedLineBytes).to.be.above(0).and.at.most(maxBufferedLineBytes)
    const errors = seen.flatMap(s => s.lines).map(l => JSON.parse(l))
    expect(errors).to.have.length(refused)
    for (const e of errors) {
      expect(e.error.code).to.equal(-32000)
      expect(e.error.data).to.deep.equal({ code: 'ERR_IPC_BUFFER_FULL', maxBufferedLineBytes })
    }
    expect(seen.filter(s => s.closed)).to.have.length(refused)
    expect(await metric('blyd_ipc_refusals_total{reason="lines"}')).to.equal(held.ipc.refused.lines)
    expect(await metric('blyd_ipc_buffered_line_bytes')).to.be.above(0)
  })
})
