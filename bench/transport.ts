/**
 * One stage hop on loopback, two processes: /bly/infer/1.0.0 frames over
 * libp2p (TCP + Noise + Yamux) against raw node:net TCP with the same
 * framing, measured in the same run. Throughput: 1 MiB FORWARD frames
 * echoed back as 1 MiB RESULT frames, `--window` in flight (MiB/s of
 * activations sent). Latency: 16 KiB FORWARD -> 16 KiB RESULT round trips,
 * one at a time (p50/p99 us).
 * Always measured: raw TCP (`rawTcp`: the echo forwards bytes as they arrive,
 * the baseline of the ratios), raw TCP store-and-forward (`rawTcpFramed`:
 * whole frames read in place and answered once complete, as a stage must;
 * for comparison) and libp2p as blyd builds it (createBlyLibp2p: Noise with
 * cached node:crypto keys on per-tick corked sockets, Yamux).
 * With --variants also: `stock` (plain noise() + yamux() defaults, what blyd
 * used before), `bigWindow` (blyd's encrypter, yamux 16 MiB windows and 1 MiB
 * messages), and `tls` when --tls-module points at an installed `@libp2p/tls`
 * entry (it is not a dependency; see docs/transport.md). The serving side
 * echoes each FORWARD's tensor as the RESULT (no layers: this measures the transport, and the
 * stage's frame path: codec, FrameStream, StageClient).
 * `stage` is the stage hop as configured, the path a real stage uses:
 * StageClient.open with its defaults, which takes the direct TLS 1.3-PSK
 * data channel (src/pipeline/direct-channel; the offer is fetched over the
 * libp2p node's /bly/infer-direct/1.0.0 stream, then the same frames flow
 * over node:tls). `libp2p` is the same StageClient with `directChannel:
 * false` (frames over the /bly/infer/1.0.0 libp2p stream), kept as a variant.
 * Every variant is measured in turns (latency in `--blocks` turns per
 * repetition), so the shared machine's slow moments fall on all of them alike.
 * Usage: npm run bench -- transport [--frames 128] [--rounds 1000] [--window 8] [--reps 3] [--blocks 10]
 * [--variants] [--tls-module /path/to/tls/dist/src/index.js]
 * The last line printed is one JSON object.
 */
import { spawn } from 'node:child_process'
import { createConnection, createServer } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { FrameDecoder } from '../src/net/frame-decoder.ts'
import { FrameStream } from '../src/net/frame-stream.ts'
import { blyConnectionEncrypter, createBlyLibp2p } from '../src/net/libp2p-node.ts'
import { DIRECT_OFFER_PROTOCOL, answerDirectOffer, createDirectChannelServer } from '../src/pipeline/direct-channel/index.ts'
import { readInPlace } from '../src/pipeline/direct-channel/read-in-place.ts'
import { InferTransport } from '../src/pipeline/infer-channel.ts'
import { inferFrameCodec, inferFrameErrors } from '../src/pipeline/infer-frames.ts'
import { StageClient } from '../src/pipeline/stage-client.ts'
import { INFER_PROTOCOL, encodeVarint } from '../src/protocols/infer.ts'
import type { InferFrame } from '../src/protocols/infer.ts'
import type { Libp2p } from '@libp2p/interface'
import type { Server, Socket } from 'node:net'

const MIB = 1024 * 1024
const BIG = MIB
const SMALL = 16 * 1024
const HIDDEN = 4096
const MODEL = 'transport-bench'

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

function strArg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

function out (line: string): void {
  process.stdout.write(line + '\n')
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** The libp2p variants, by name: both processes build the same ones. */
const NODE_VARIANTS = ['libp2p', 'stock', 'bigWindow', 'tls'] as const
type NodeVariant = typeof NODE_VARIANTS[number]

function variantsWanted (): NodeVariant[] {
  if (!process.argv.includes('--variants')) {
    return ['libp2p']
  }
  return NODE_VARIANTS.filter(v => v !== 'tls' || strArg('tls-module') != null)
}

async function bareLibp2p (encrypter: any, muxer: any): Promise<Libp2p> {
  return createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [encrypter],
    streamMuxers: [muxer]
  })
}

async function makeNode (variant: NodeVariant): Promise<Libp2p> {
  switch (variant) {
    case 'libp2p':
      return createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    case 'stock':
      return bareLibp2p(noise(), yamux())
    case 'bigWindow':
      return bareLibp2p(blyConnectionEncrypter(), yamux({
        maxMessageSize: MIB,
        streamOptions: { initialStreamWindowSize: 16 * MIB, maxStreamWindowSize: 64 * MIB, maxReadBufferLength: 64 * MIB }
      }))
    default: {
      const mod = await import(strArg('tls-module') ?? '@libp2p/tls')
      return bareLibp2p(mod.tls(), yamux())
    }
  }
}

// ---------------------------------------------------------------- serving side

/** Echo every FORWARD's tensor back as the RESULT, OPEN answered OPEN_OK. */
async function serveInfer (node: Libp2p): Promise<void> {
  await node.handle(INFER_PROTOCOL, (stream) => {
    const frames: FrameStream<InferFrame> = new FrameStream(stream, {
      codec: inferFrameCodec,
      maxFrameBytes: 4 * MIB,
      onFrame: (f) => {
        if (f.type === 'open') {
          void frames.send({ type: 'open-ok', sessionId: f.sessionId, maxLength: 1 << 20, hiddenSize: HIDDEN }).catch(() => {})
        } else if (f.type === 'forward') {
          void frames.send({ type: 'result', sessionId: f.sessionId, seq: f.seq, startPos: f.startPos, kind: 0, tensor: f.tensor }).catch(() => {})
        } else if (f.type === 'close') {
          void frames.close()
        }
      },
      onBadFrame: (err) => { frames.abort(err) },
      onClose: () => {}
    })
  })
}

/** The direct TLS channel: offers over `node`'s libp2p, channels answer OPEN and echo FORWARD as RESULT (as serveInfer). */
async function serveDirect (node: Libp2p): Promise<void> {
  const server = createDirectChannelServer({
    maxFrameBytes: 4 * MIB,
    handler: (channel) => {
      channel.attach({
        onFrame: (f) => {
          if (f.type === 'open') {
            void channel.send({ type: 'open-ok', sessionId: f.sessionId, maxLength: 1 << 20, hiddenSize: HIDDEN }).catch(() => {})
          } else if (f.type === 'forward') {
            void channel.send({ type: 'result', sessionId: f.sessionId, seq: f.seq, startPos: f.startPos, kind: 0, tensor: f.tensor }).catch(() => {})
          } else if (f.type === 'close') {
            void channel.close()
          }
        },
        onBadFrame: (err) => { channel.abort(err) },
        onClose: () => {}
      })
    }
  })
  await server.start()
  await node.handle(DIRECT_OFFER_PROTOCOL, async (stream, connection) => {
    await answerDirectOffer(stream, server, connection.remotePeer.toString())
  })
}

/**
 * Counts 4-byte little-endian length-prefixed frames in a byte stream
 * without copying the payloads; calls `onFrame` at the end of each frame.
 */
class FrameCounter {
  private head: Buffer
  private headLen: number
  private left: number
  private readonly onFrame: () => void

  constructor (onFrame: () => void) {
    this.head = Buffer.alloc(4)
    this.headLen = 0
    this.left = 0
    this.onFrame = onFrame
  }

  push (chunk: Buffer): void {
    let i = 0
    while (i < chunk.length) {
      if (this.left === 0) {
        const take = Math.min(4 - this.headLen, chunk.length - i)
        chunk.copy(this.head, this.headLen, i, i + take)
        this.headLen += take
        i += take
        if (this.headLen === 4) {
          this.left = this.head.readUInt32LE(0)
          this.headLen = 0
        }
        continue
      }
      const take = Math.min(this.left, chunk.length - i)
      this.left -= take
      i += take
      if (this.left === 0) {
        this.onFrame()
      }
    }
  }
}

/** Raw TCP: 4-byte little-endian length frames, echoed back as they arrive (frames parsed, payloads not copied). */
async function serveTcp (): Promise<Server> {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    const frames = new FrameCounter(() => {})
    socket.on('data', (chunk: Buffer) => {
      frames.push(chunk)
      socket.write(chunk)
    })
    socket.on('error', () => {})
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => { resolve(server) }))
}

/**
 * Raw TCP, store-and-forward: varint length-prefixed frames (the infer
 * framing, no TLS, no codec), each read straight into one buffer
 * (FrameDecoder in place, as the direct channel's server does; `data`
 * events where this node does not allow it) and answered once whole, prefix
 * and frame in one writev (node:net writes several buffers without joining
 * them).
 */
async function serveTcpFramed (): Promise<Server> {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    const frames = new FrameDecoder(4 * MIB, inferFrameErrors)
    let corked = false
    const uncork = (): void => {
      corked = false
      socket.uncork()
    }
    const answer = (frame: Uint8Array): void => {
      if (!corked) {
        corked = true
        socket.cork()
        process.nextTick(uncork)
      }
      socket.write(encodeVarint(frame.length))
      socket.write(frame)
    }
    const inPlace = readInPlace(socket, {
      buffer: () => frames.readBuffer(),
      callback: (n, buf) => {
        frames.read(buf, n, answer)
        return true
      }
    })
    if (inPlace) {
      socket.resume()
    } else {
      socket.on('data', (chunk: Buffer) => { frames.push(chunk, answer) })
    }
    socket.on('error', () => {})
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => { resolve(server) }))
}

async function serve (): Promise<void> {
  const addrs: Record<string, string> = {}
  for (const v of variantsWanted()) {
    const node = await makeNode(v)
    await serveInfer(node)
    addrs[v] = node.getMultiaddrs()[0].toString()
    if (v === 'libp2p') {
      await serveDirect(node)
    }
  }
  const tcpServer = await serveTcp()
  const addr = tcpServer.address()
  const framedServer = await serveTcpFramed()
  const framedAddr = framedServer.address()
  out(JSON.stringify({
    tcpPort: typeof addr === 'object' && addr != null ? addr.port : 0,
    tcpFramedPort: typeof framedAddr === 'object' && framedAddr != null ? framedAddr.port : 0,
    addrs
  }))
  // runs until the parent kills it or closes stdin
  process.stdin.resume()
  process.stdin.on('end', () => { process.exit(0) })
}

// ---------------------------------------------------------------- measuring side

interface Figures { mibps: number, p50us: number, p99us: number }

interface Transport {
  /** send one frame of `bytes` payload; resolves when its echo is back */
  roundTrip(payload: Float32Array): Promise<void>
  close(): Promise<void>
}

async function tcpTransport (port: number): Promise<Transport> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => { resolve(s) })
    s.once('error', reject)
  })
  socket.setNoDelay(true)
  const waiting: Array<() => void> = []
  const frames = new FrameCounter(() => { waiting.shift()?.() })
  socket.on('data', (chunk: Buffer) => { frames.push(chunk) })
  return {
    async roundTrip (payload) {
      const head = Buffer.alloc(4)
      head.writeUInt32LE(payload.byteLength, 0)
      const done = new Promise<void>(resolve => { waiting.push(resolve) })
      socket.write(head)
      if (!socket.write(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength))) {
        await new Promise(resolve => socket.once('drain', resolve))
      }
      return done
    },
    async close () {
      socket.destroy()
    }
  }
}

/**
 * Raw TCP, store-and-forward (see serveTcpFramed): the answer is read
 * straight into one buffer per frame (`onread` + FrameDecoder, as the direct
 * channel's client does), a round trip ends when the whole frame is there.
 */
async function tcpFramedTransport (port: number): Promise<Transport> {
  const waiting: Array<() => void> = []
  const frames = new FrameDecoder(4 * MIB, inferFrameErrors)
  const onFrame = (): void => { waiting.shift()?.() }
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = createConnection({
      host: '127.0.0.1',
      port,
      onread: {
        buffer: () => frames.readBuffer(),
        callback: (n: number, buf: Uint8Array) => {
          frames.read(buf, n, onFrame)
          return true
        }
      }
    }, () => { resolve(s) })
    s.once('error', reject)
  })
  socket.setNoDelay(true)
  return {
    async roundTrip (payload) {
      const done = new Promise<void>(resolve => { waiting.push(resolve) })
      socket.cork()
      socket.write(encodeVarint(payload.byteLength))
      const flushed = socket.write(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength))
      socket.uncork()
      if (!flushed) {
        await new Promise(resolve => socket.once('drain', resolve))
      }
      return done
    },
    async close () {
      socket.destroy()
    }
  }
}

/**
 * One StageClient session: `direct` = as a stage is configured (the direct
 * channel; it must be taken, else the figure would be the libp2p one),
 * false = the /bly/infer/1.0.0 libp2p stream only.
 */
async function stageTransport (node: Libp2p, addr: string, direct: boolean): Promise<Transport> {
  const client = await StageClient.open({ libp2p: node, peer: multiaddr(addr), modelId: MODEL, start: 0, end: 1, sessionId: 1, maxFrameBytes: 4 * MIB, directChannel: direct })
  const want = direct ? InferTransport.DIRECT : InferTransport.LIBP2P
  if (client.transport !== want) {
    await client.close()
    throw new Error(`stage session went over ${client.transport}, not ${want}`)
  }
  let pos = 0
  return {
    async roundTrip (payload) {
      const rows = payload.length / HIDDEN
      await client.forward(payload, rows, HIDDEN, pos)
      pos = (pos + rows) % 100_000
    },
    async close () {
      await client.close()
    }
  }
}

/** `count` 1 MiB round trips, `window` in flight; returns the seconds they took. */
async function throughputBlock (t: Transport, big: Float32Array, count: number, window: number): Promise<number> {
  const t0 = performance.now()
  let sent = 0
  const inflight = new Set<Promise<void>>()
  while (sent < count) {
    while (inflight.size < window && sent < count) {
      const p: Promise<void> = t.roundTrip(big).finally(() => inflight.delete(p))
      inflight.add(p)
      sent++
    }
    await Promise.race(inflight)
  }
  await Promise.all(inflight)
  return (performance.now() - t0) / 1000
}

/** `count` 16 KiB round trips one at a time, each one's microseconds pushed to `rtts`. */
async function latencyBlock (t: Transport, small: Float32Array, count: number, rtts: number[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const s = performance.now()
    await t.roundTrip(small)
    rtts.push((performance.now() - s) * 1000)
  }
}

/**
 * One repetition over every transport at once: each is warmed up, then
 * measured in turns, so a slow moment of a shared machine falls on all of
 * them alike: throughput in one run each, latency cut into `blocks` turns.
 * The order rotates with `rep` and the block, so no variant always follows
 * the same one (the client process's garbage from one is collected in the next).
 */
async function measureInterleaved (ts: Transport[], frames: number, rounds: number, window: number, blocks: number, rep: number): Promise<Figures[]> {
  const big = new Float32Array(BIG / 4).map((_, i) => i % 251)
  const small = new Float32Array(SMALL / 4).map((_, i) => i % 13)
  const order = (turn: number): number[] => ts.map((_, i) => (i + turn) % ts.length)
  for (const t of ts) {
    for (let i = 0; i < 16; i++) {
      await t.roundTrip(big)
    }
    for (let i = 0; i < 200; i++) {
      await t.roundTrip(small)
    }
  }
  const seconds = ts.map(() => 0)
  for (const i of order(rep)) {
    seconds[i] = await throughputBlock(ts[i], big, frames, window)
  }
  const rtts: number[][] = ts.map(() => [])
  for (let b = 0; b < blocks; b++) {
    const count = Math.floor(rounds * (b + 1) / blocks) - Math.floor(rounds * b / blocks)
    for (const i of order(rep + b)) {
      await latencyBlock(ts[i], small, count, rtts[i])
    }
  }
  return ts.map((_, i) => {
    const sorted = rtts[i].sort((a, b) => a - b)
    return { mibps: frames * BIG / MIB / seconds[i], p50us: percentile(sorted, 0.5), p99us: percentile(sorted, 0.99) }
  })
}

function round (n: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

async function main (): Promise<void> {
  const frames = arg('frames', 128)
  const rounds = arg('rounds', 1000)
  const window = arg('window', 8)
  const reps = arg('reps', 3)
  const blocks = Math.max(1, Math.min(rounds, arg('blocks', 10)))
  const wanted = variantsWanted()
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2), '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const kill = (): void => { child.kill('SIGKILL') }
  process.on('exit', kill)
  try {
    const info = await new Promise<{ tcpPort: number, tcpFramedPort: number, addrs: Record<string, string> }>((resolve, reject) => {
      let text = ''
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString()
        const nl = text.indexOf('\n')
        if (nl >= 0) {
          resolve(JSON.parse(text.slice(0, nl)))
        }
      })
      child.once('exit', (code) => { reject(new Error(`server process exited with ${code}`)) })
    })
    out(`transport bench: ${frames} x 1 MiB frames (${window} in flight, echoed), ${rounds} x 16 KiB round trips, variants in turns (latency in ${blocks} blocks); two processes on 127.0.0.1`)
    const nodes: Libp2p[] = []
    const variants: Array<[string, () => Promise<Transport>]> = [
      ['rawTcp', async () => tcpTransport(info.tcpPort)],
      ['rawTcpFramed', async () => tcpFramedTransport(info.tcpFramedPort)]
    ]
    for (const v of wanted) {
      const node = await makeNode(v)
      nodes.push(node)
      if (v === 'libp2p') {
        variants.push(['stage', async () => stageTransport(node, info.addrs.libp2p, true)])
      }
      variants.push([v, async () => stageTransport(node, info.addrs[v], false)])
    }
    // every variant open at once and measured in turns, block by block, `reps` times; the median
    // of each figure is kept (the box may be shared)
    const runs: Record<string, Figures[]> = Object.fromEntries(variants.map(([name]) => [name, []]))
    for (let rep = 0; rep < reps; rep++) {
      const ts: Transport[] = []
      try {
        for (const [, make] of variants) {
          ts.push(await make())
        }
        const figures = await measureInterleaved(ts, frames, rounds, window, blocks, rep)
        variants.forEach(([name], i) => { runs[name].push(figures[i]) })
      } finally {
        await Promise.all(ts.map(async t => { await t.close() }))
      }
    }
    const results: Record<string, Figures> = {}
    for (const [name] of variants) {
      const med = (k: keyof Figures): number => runs[name].map(r => r[k]).sort((a, b) => a - b)[Math.floor(runs[name].length / 2)]
      results[name] = { mibps: med('mibps'), p50us: med('p50us'), p99us: med('p99us') }
      const r = results[name]
      out(`${name.padEnd(12)} ${r.mibps.toFixed(0).padStart(6)} MiB/s   p50 ${r.p50us.toFixed(0).padStart(5)} us   p99 ${r.p99us.toFixed(0).padStart(5)} us   (median of ${reps}; MiB/s runs: ${runs[name].map(x => x.mibps.toFixed(0)).join(', ')})`)
    }
    await Promise.all(nodes.map(async n => { await n.stop() }))
    const raw = results.rawTcp
    const framed = results.rawTcpFramed
    const ratios = (r: Figures): { throughput: number, throughputVsFramed: number, latencyP50: number, latencyP99: number } => ({
      throughput: round(r.mibps / raw.mibps, 3),
      throughputVsFramed: round(r.mibps / framed.mibps, 3),
      latencyP50: round(r.p50us / raw.p50us, 2),
      latencyP99: round(r.p99us / raw.p99us, 2)
    })
    const summary = {
      bench: 'transport',
      frameBytes: BIG,
      smallFrameBytes: SMALL,
      frames,
      rounds,
      window,
      reps,
      blocks,
      loadAverage: loadavg()[0],
      cpus: cpus().length,
      rawTcp: { mibps: round(raw.mibps), p50us: round(raw.p50us), p99us: round(raw.p99us) },
      // raw TCP holding whole frames like a stage (store-and-forward, read in place), for comparison only
      rawTcpFramed: { mibps: round(framed.mibps), p50us: round(framed.p50us), p99us: round(framed.p99us), throughputVsRawTcp: round(framed.mibps / raw.mibps, 3) },
      ...Object.fromEntries(['stage', ...wanted].map(v => [v, { mibps: round(results[v].mibps), p50us: round(results[v].p50us), p99us: round(results[v].p99us), ratio: ratios(results[v]) }])),
      targets: { throughputRatio: 0.6, latencyRatio: 3 },
      // the stage hop as configured (direct channel), against rawTcp
      met: {
        throughput: ratios(results.stage).throughput >= 0.6,
        latency: ratios(results.stage).latencyP50 <= 3
      },
      // the libp2p stream variant
      libp2pMet: {
        throughput: ratios(results.libp2p).throughput >= 0.6,
        latency: ratios(results.libp2p).latencyP50 <= 3
      }
    }
    out(JSON.stringify(summary))
  } finally {
    child.stdin.end()
    kill()
  }
}

if (process.argv.includes('--serve')) {
  await serve()
} else {
  await main()
}
