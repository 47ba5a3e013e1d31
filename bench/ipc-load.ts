// IPC load bench: a real `blyd start` daemon (a fresh one per load) under the
// abusive IPC loads of issue 16, item 2, while a second client asks `status`
// every 20 ms. For each load it prints the daemon's RSS growth (peak VmRSS
// sampled every 25 ms, minus VmRSS just before the load) and the latency of
// the prober's `status` (p50, p99, max), against the idle latency measured on
// the same daemon just before the load (the baseline of the ratios), plus the
// daemon's own `status.ipc` counters after the load.
//
//   npm run bench -- ipc-load [--pipeline 100000] [--batch 50000] [--lines 20] [--line-mib 15]
//     [--depth 8000000] [--wide 5000000] [--connections 1000] [--hold-ms 2000] [--only pipeline,batch,...]
//
// Loads:
// - pipeline: one connection writes `--pipeline` status requests and never reads an answer
// - batch: one JSON-RPC batch of `--batch` status calls
// - lines: `--lines` connections each send `--line-mib` MiB of one unfinished line and hold it
// - deep: one line `[` x depth then `]` x depth
// - wide: one status request whose params hold an array of `--wide` empty objects (16 MB)
// - connections: `--connections` connections opened at once and held
// The last line printed is one JSON object.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { IpcClient } from '../src/daemon/ipc-client.ts'
import type { ChildProcess } from 'node:child_process'
import type { Socket } from 'node:net'

const { values: opts } = parseArgs({
  options: {
    pipeline: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '50000' },
    lines: { type: 'string', default: '20' },
    'line-mib': { type: 'string', default: '15' },
    depth: { type: 'string', default: '8000000' },
    wide: { type: 'string', default: '5000000' },
    connections: { type: 'string', default: '1000' },
    'hold-ms': { type: 'string', default: '2000' },
    only: { type: 'string' }
  }
})

const MiB = 1024 * 1024
const BIN = fileURLToPath(new URL('../bin/blyd.js', import.meta.url))
const LOADS = ['pipeline', 'batch', 'lines', 'deep', 'wide', 'connections'] as const
type LoadName = typeof LOADS[number]
const HOLD_MS = Number(opts['hold-ms'])

const out = (line: string): void => { process.stdout.write(line + '\n') }
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** VmRSS and VmHWM of a process, bytes */
async function memory (pid: number): Promise<{ rss: number, hwm: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

interface Daemon {
  child: ChildProcess
  dir: string
  socketPath: string
}

/** `blyd start` in a fresh data dir, without the runner's BLYD_* or NODE_OPTIONS */
async function startDaemon (): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'blyd-ipcb-'))
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_') && k !== 'NODE_OPTIONS') {
      env[k] = v
    }
  }
  const child = spawn(process.execPath, [BIN, 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--backend', 'cpu', '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] })
  const socketPath = join(dir, 'blyd.sock')
  const deadline = Date.now() + 60_000
  while (true) {
    if (child.exitCode != null) {
      throw new Error(`daemon exited with ${child.exitCode}`)
    }
    try {
      const c = await IpcClient.connect({ socketPath })
      await c.request('status')
      c.close()
      return { child, dir, socketPath }
    } catch (err) {
      if (Date.now() > deadline) {
        throw err
      }
      await sleep(100)
    }
  }
}

async function stopDaemon (d: Daemon): Promise<void> {
  if (d.child.exitCode == null && d.child.signalCode == null) {
    const exited = new Promise(resolve => d.child.once('exit', resolve))
    d.child.kill('SIGKILL')
    await exited
  }
  await rm(d.dir, { recursive: true, force: true })
}

/** A `status` asker on its own connection (opened before the load), every 20 ms until stopped. */
class Prober {
  readonly latencies: number[] = []
  failures = 0
  private running = true
  private loop: Promise<void> | undefined
  private readonly client: IpcClient

  constructor (client: IpcClient) {
    this.client = client
  }

  start (): void {
    this.loop = (async () => {
      while (this.running) {
        const t0 = performance.now()
        try {
          await this.client.request('status')
          this.latencies.push(performance.now() - t0)
        } catch {
          this.failures++
          return
        }
        await sleep(20)
      }
    })()
  }

  async stop (): Promise<void> {
    this.running = false
    await this.loop
  }
}

/** peak VmRSS, sampled every 25 ms until stopped */
class RssSampler {
  peak = 0
  private running = true
  private readonly loop: Promise<void>

  constructor (pid: number) {
    this.loop = (async () => {
      while (this.running) {
        const m = await memory(pid).catch(() => undefined)
        if (m != null) {
          this.peak = Math.max(this.peak, m.rss)
        }
        await sleep(25)
      }
    })()
  }

  async stop (): Promise<number> {
    this.running = false
    await this.loop
    return this.peak
  }
}

async function connect (path: string): Promise<Socket> {
  const socket = createConnection(path)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  return socket
}

/** resolves with the first line the server sends (its length, and the line itself when small), or null on close/timeout */
async function firstLine (socket: Socket, timeoutMs: number): Promise<{ bytes: number, message: any } | null> {
  return new Promise(resolve => {
    const parts: Buffer[] = []
    let size = 0
    const done = (value: { bytes: number, message: any } | null): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve(value)
    }
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a)
      parts.push(nl === -1 ? chunk : chunk.subarray(0, nl))
      size += nl === -1 ? chunk.length : nl
      if (nl !== -1) {
        let message: any
        if (size < MiB) {
          try {
            message = JSON.parse(Buffer.concat(parts).toString('utf8'))
          } catch {
            message = undefined
          }
        }
        done({ bytes: size, message })
      }
    }
    const onClose = (): void => { done(null) }
    const timer = setTimeout(() => { done(null) }, timeoutMs)
    socket.on('data', onData)
    socket.on('close', onClose)
  })
}

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

const STATUS_LINE = (id: number): string => `{"jsonrpc":"2.0","id":${id},"method":"status"}`

/**
 * wait until the daemon's request count grows by fewer than `slack` in
 * `quietMs` (the prober and this control connection still ask), or maxMs passed
 */
async function waitQuiet (client: IpcClient, quietMs: number, maxMs: number, slack = 200): Promise<void> {
  const deadline = Date.now() + maxMs
  let last = -Infinity
  while (Date.now() < deadline) {
    const s: any = await client.request('status')
    if (s.ipc.requests - last < slack) {
      return
    }
    last = s.ipc.requests
    await sleep(quietMs)
  }
}

/** `held()`: the peak RSS so far, bytes (for a load that measures while it holds what it sent) */
type LoadRunner = (d: Daemon, control: IpcClient, held: () => Promise<number>) => Promise<Record<string, unknown>>

/** Each load against the daemon; each returns what it observed, for the human line. */
const RUNNERS: Record<LoadName, LoadRunner> = {
  pipeline: async (d, control) => {
    const n = Number(opts.pipeline)
    const socket = await connect(d.socketPath)
    socket.pause()
    const lines = Array.from({ length: n }, (_, i) => STATUS_LINE(i)).join('\n') + '\n'
    socket.write(lines)
    await sleep(HOLD_MS)
    await waitQuiet(control, 1000, 60_000)
    socket.destroy()
    return { requests: n, bytes: Buffer.byteLength(lines) }
  },
  batch: async (d) => {
    const n = Number(opts.batch)
    const socket = await connect(d.socketPath)
    const line = '[' + Array.from({ length: n }, (_, i) => STATUS_LINE(i)).join(',') + ']\n'
    const answer = firstLine(socket, 120_000)
    socket.write(line)
    const got = await answer
    await sleep(HOLD_MS)
    socket.destroy()
    const code = got?.message?.error?.data?.code ?? got?.message?.error?.code
    return { calls: n, bytes: Buffer.byteLength(line), answerBytes: got?.bytes ?? null, answer: code ?? (got == null ? 'none' : 'results') }
  },
  lines: async (d, _control, held) => {
    const n = Number(opts.lines)
    const mib = Number(opts['line-mib'])
    const sockets = await Promise.all(Array.from({ length: n }, async () => connect(d.socketPath)))
    const errors: string[] = []
    for (const s of sockets) {
      s.setEncoding('utf8')
      s.on('data', (text: string) => { errors.push(text) })
    }
    const piece = Buffer.alloc(MiB, 0x61)
    await Promise.all(sockets.map(async s => {
      if (!await write(s, '{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"')) {
        return
      }
      for (let i = 0; i < mib; i++) {
        if (!await write(s, piece)) {
          return
        }
      }
    }))
    await sleep(HOLD_MS)
    const peakHeld = await held()
    const closedByServer = sockets.filter(s => s.destroyed || s.readableEnded).length
    for (const s of sockets) {
      s.destroy()
    }
    // closing hands each held tail to the parser as a last line (a parse error): transient copies
    await sleep(HOLD_MS)
    return { connections: n, mibEach: mib, closedByServer, errorLines: errors.join('').split('\n').filter(Boolean).length, peakHeld }
  },
  deep: async (d) => {
    const depth = Number(opts.depth)
    const socket = await connect(d.socketPath)
    const line = Buffer.alloc(2 * depth + 1)
    line.fill(0x5b, 0, depth)
    line.fill(0x5d, depth, 2 * depth)
    line[2 * depth] = 0x0a
    const answer = firstLine(socket, 120_000)
    await write(socket, line)
    const got = await answer
    socket.destroy()
    const m = Array.isArray(got?.message) ? got?.message[0] : got?.message
    return { depth, answer: m?.error?.data?.code ?? m?.error?.code ?? 'none' }
  },
  wide: async (d) => {
    const n = Number(opts.wide)
    const socket = await connect(d.socketPath)
    const line = `{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":[${'{},'.repeat(n - 1)}{}]}}\n`
    const answer = firstLine(socket, 120_000)
    await write(socket, line)
    const got = await answer
    socket.destroy()
    return { objects: n, bytes: line.length, answer: got?.message?.error?.data?.code ?? got?.message?.error?.code ?? 'none' }
  },
  connections: async (d) => {
    const n = Number(opts.connections)
    const sockets: Socket[] = []
    let failed = 0
    const seen = { errorLines: 0 }
    const count = (chunk: Buffer): void => { seen.errorLines += chunk.toString().split('\n').length - 1 }
    for (let i = 0; i < n; i += 50) {
      const made = await Promise.allSettled(Array.from({ length: Math.min(50, n - i) }, async () => connect(d.socketPath)))
      for (const r of made) {
        if (r.status === 'fulfilled') {
          sockets.push(r.value)
          r.value.on('data', count)
        } else {
          failed++
        }
      }
    }
    await sleep(HOLD_MS)
    const closedByServer = sockets.filter(s => s.destroyed || s.readableEnded).length
    for (const s of sockets) {
      s.destroy()
    }
    return { connections: n, connectFailed: failed, closedByServer, errorLines: seen.errorLines }
  }
}

interface LoadFigures {
  load: LoadName
  rssGrowthMiB: number
  /** lines: the growth while the lines are held, before the sockets close */
  rssHeldGrowthMiB: number | undefined
  statusP50Ms: number
  statusP99Ms: number
  statusMaxMs: number
  idleP50Ms: number
  idleMaxMs: number
  /** status max latency under the load / idle p50 */
  statusMaxVsIdle: number
  statusProbes: number
  statusFailures: number
  loadMs: number
  observed: Record<string, unknown>
  /** the daemon's status.ipc after the load */
  ipc: Record<string, unknown>
}

/** the daemon's status.ipc without its limits (printed once) and error table */
function brief (ipc: Record<string, unknown> = {}): Record<string, unknown> {
  const { limits, errors, requests, ...rest } = ipc
  return rest
}

async function measure (name: LoadName): Promise<LoadFigures> {
  const d = await startDaemon()
  try {
    const pid = d.child.pid ?? -1
    const probeClient = await IpcClient.connect({ socketPath: d.socketPath })
    const control = await IpcClient.connect({ socketPath: d.socketPath })
    for (let i = 0; i < 50; i++) {
      await probeClient.request('status')
    }
    const idle = new Prober(probeClient)
    idle.start()
    await sleep(1500)
    await idle.stop()
    const before = await memory(pid)
    const sampler = new RssSampler(pid)
    const prober = new Prober(probeClient)
    prober.start()
    const t0 = performance.now()
    const observed = await RUNNERS[name](d, control, async () => Math.max(sampler.peak, (await memory(pid)).rss))
    const loadMs = performance.now() - t0
    await prober.stop()
    const peak = Math.max(await sampler.stop(), (await memory(pid)).rss)
    const status: any = await control.request('status').catch(() => ({ ipc: {} }))
    limits ??= status.ipc.limits
    const { peakHeld: held, ...seen } = observed as { peakHeld?: number }
    probeClient.close()
    control.close()
    const idleP50 = percentile(idle.latencies, 0.5)
    const max = Math.max(...prober.latencies)
    return {
      load: name,
      rssGrowthMiB: round((peak - before.rss) / MiB),
      rssHeldGrowthMiB: held == null ? undefined : round((held - before.rss) / MiB),
      statusP50Ms: round(percentile(prober.latencies, 0.5), 2),
      statusP99Ms: round(percentile(prober.latencies, 0.99), 2),
      statusMaxMs: round(max, 2),
      idleP50Ms: round(idleP50, 2),
      idleMaxMs: round(Math.max(...idle.latencies), 2),
      statusMaxVsIdle: round(max / idleP50, 1),
      statusProbes: prober.latencies.length,
      statusFailures: prober.failures,
      loadMs: Math.round(loadMs),
      observed: seen,
      ipc: brief(status.ipc)
    }
  } finally {
    await stopDaemon(d)
  }
}

const wanted = opts.only == null ? [...LOADS] : opts.only.split(',').map(s => s.trim()) as LoadName[]
for (const name of wanted) {
  if (!(LOADS as readonly string[]).includes(name)) {
    throw new Error(`unknown load ${name}; loads: ${LOADS.join(', ')}`)
  }
}
const load0 = loadavg()[0]
out(`ipc-load bench: a fresh daemon per load (--backend cpu), status asked every 20 ms on a connection opened before the load; ${availableParallelism()} cores, load average ${load0.toFixed(2)}`)
const results: LoadFigures[] = []
/** the daemon's IPC limits, as the first daemon reported them */
let limits: unknown
for (const name of wanted) {
  const r = await measure(name)
  results.push(r)
  out(`${name.padEnd(12)} rss +${r.rssGrowthMiB} MiB${r.rssHeldGrowthMiB != null ? ` (+${r.rssHeldGrowthMiB} MiB while held)` : ''}; status p50 ${r.statusP50Ms} ms, p99 ${r.statusP99Ms} ms, max ${r.statusMaxMs} ms (idle p50 ${r.idleP50Ms} ms, max x${r.statusMaxVsIdle}); ${r.statusProbes} probes, ${r.statusFailures} failed; load ${r.loadMs} ms; ${JSON.stringify(r.observed)}`)
  out(`${''.padEnd(12)} daemon ipc: ${JSON.stringify(r.ipc)}`)
}
const worst = results.reduce((m, r) => Math.max(m, r.statusMaxMs), 0)
const worstRss = results.reduce((m, r) => Math.max(m, r.rssGrowthMiB), 0)
out(JSON.stringify({
  bench: 'ipc-load',
  cores: availableParallelism(),
  loadAverage: [Number(load0.toFixed(2)), Number(loadavg()[0].toFixed(2))],
  worstStatusMaxMs: worst,
  worstRssGrowthMiB: worstRss,
  limits,
  loads: Object.fromEntries(results.map(r => [r.load, {
    rssGrowthMiB: r.rssGrowthMiB,
    ...(r.rssHeldGrowthMiB != null ? { rssHeldGrowthMiB: r.rssHeldGrowthMiB } : {}),
    statusP50Ms: r.statusP50Ms,
    statusP99Ms: r.statusP99Ms,
    statusMaxMs: r.statusMaxMs,
    idleP50Ms: r.idleP50Ms,
    statusMaxVsIdle: r.statusMaxVsIdle,
    statusP50VsIdle: round(r.statusP50Ms / r.idleP50Ms, 2),
    statusFailures: r.statusFailures,
    loadMs: r.loadMs,
    observed: r.observed,
    ipc: r.ipc
  }]))
}))
