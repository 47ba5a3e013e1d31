/**
 * Failover through 5 loopback daemons: A imports the 4-layer test fixture
 * and generates greedily (`generate` over its IPC socket, tokens streamed);
 * four more daemons serve it, two holders per span ([0, 2) and [2, 4)).
 * Every holder's step is slowed by --delay-ms (the test-only step delay,
 * standing in for a bigger model). Once the holder the route uses has
 * computed --act-after steps of a generation, it is
 * - SIGKILLed (`sigkill`: its streams close),
 * - SIGSTOPped (`sigstop`: it stops answering; the step deadline passes),
 * - told by SIGUSR2 to answer NaN from then on (`garbage`), or
 * - told by SIGUSR1 to take 3x as long per step from then on (`slow`: a
 * healthy stage that became slower; it must not be replaced).
 * Recovery time: the longest the bench waits for a token from the fault on
 * (the fault to the next token, or a longer gap after it: a token already
 * computed when the fault lands still arrives at once).
 * Every generation's tokens must equal an uninterrupted run's. After each
 * run the faulty holder is retired and a fresh one takes its place.
 *
 * The baseline, measured in the same run: A restarted (same port, same data)
 * with --step-deadline-floor-ms equal to --step-timeout-ms, which gives back
 * the fixed deadline of old (the step timeout, per 32 positions); the same
 * faults, --baseline-runs times each.
 *
 * Usage: npm run bench -- failover [--runs 3] [--baseline-runs 1] [--tokens 120]
 * [--delay-ms 10] [--act-after 30] [--step-timeout-ms 10000]
 * The last line printed is one JSON object.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, runJson, startDaemon, waitFor } from './lib/daemons.ts'
import type { BenchDaemon } from './lib/daemons.ts'

const FIXTURE = fileURLToPath(new URL('../../shared/fixtures/qwen3-tiny/untied-f32', import.meta.url))
const RECORD_TTL_MS = 2000
const FAULTS = ['sigkill', 'sigstop', 'garbage'] as const
type Fault = typeof FAULTS[number] | 'slow'
interface Span { start: number, end: number }
/** the span each fault hits (both are used) */
const SPAN_OF: Record<Fault, Span> = { sigkill: { start: 0, end: 2 }, sigstop: { start: 2, end: 4 }, garbage: { start: 0, end: 2 }, slow: { start: 2, end: 4 } }
const REASON_OF: Record<Fault, string | undefined> = { sigkill: 'closed', sigstop: 'timeout', garbage: 'malformed', slow: undefined }

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

const RUNS = arg('runs', 3)
const BASELINE_RUNS = arg('baseline-runs', 1)
const TOKENS = arg('tokens', 120)
const DELAY_MS = arg('delay-ms', 10)
const ACT_AFTER = arg('act-after', 30)
const STEP_TIMEOUT_MS = arg('step-timeout-ms', 10_000)

function out (line: string): void {
  process.stdout.write(line + '\n')
}

function round (x: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

function median (xs: number[]): number {
  if (xs.length === 0) {
    return Number.NaN
  }
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

function quantile (xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

interface Generation {
  tokens: number[]
  /** performance.now() when each token reached the bench */
  at: number[]
  result: any
}

interface RunFigures {
  fault: Fault
  /** the longest wait for a token from the fault on (ms) */
  recoveryMs: number
  identical: boolean
  recoveries: number
  reason?: string
  /** the replacement's part: reroute, open, replay (the client's figure) */
  replaceMs?: number
  /** the deadline the stalled stage missed */
  deadlineMs?: number
  /** median token interval before and after the fault */
  tokenMsBefore: number
  tokenMsAfter: number
}

class Mesh {
  readonly root: string
  readonly port: number
  a!: BenchDaemon
  model!: string
  readonly holders: Map<string, BenchDaemon[]>
  private serial: number

  constructor (root: string, port: number) {
    this.root = root
    this.port = port
    this.holders = new Map()
    this.serial = 0
  }

  async startA (extra: string[] = []): Promise<void> {
    // on a restart, the holders are its bootstrap peers: its DHT finds their spans at once
    const holders = [...this.holders.values()].flat().map(n => n.addr)
    const bootstrap = holders.length > 0 ? ['--bootstrap', holders.join(',')] : []
    this.a = await startDaemon('a', join(this.root, 'a'), ['--listen', `/ip4/127.0.0.1/tcp/${this.port}`, '--step-timeout-ms', String(STEP_TIMEOUT_MS), ...bootstrap, ...extra])
  }

  async spans (): Promise<Array<{ peerId: string, start: number, end: number, source: string }>> {
    return (await this.a.request('peers', { model: this.model })).spans
  }

  async addHolder (span: Span): Promise<BenchDaemon> {
    const key = `${span.start}-${span.end}`
    const n = await startDaemon(`${key}#${++this.serial}`, join(this.root, `h${this.serial}`), ['--bootstrap', this.a.addr, '--model', this.model, '--layers', key, '--record-ttl-ms', String(RECORD_TTL_MS)], {
      ...(DELAY_MS > 0 ? { BLYD_TEST_STEP_DELAY_MS: String(DELAY_MS) } : {}),
      BLYD_TEST_CORRUPT_ON_SIGNAL: 'SIGUSR2',
      BLYD_TEST_SLOW_ON_SIGNAL: 'SIGUSR1',
      BLYD_TEST_SLOW_FACTOR: '3'
    })
    this.holders.set(key, [...(this.holders.get(key) ?? []), n])
    return n
  }

  async waitServing (): Promise<void> {
    const all = [...this.holders.entries()].flatMap(([key, ns]) => ns.map(n => ({ key, n })))
    await waitFor('A to see every holder serve', async () => {
      const spans = await this.spans()
      return all.every(({ key, n }) => spans.some(s => s.peerId === n.peerId && `${s.start}-${s.end}` === key && s.source === 'direct'))
    }, 120_000)
  }

  async steps (n: BenchDaemon): Promise<number> {
    return (await n.request('status')).serving?.steps ?? 0
  }

  /** Greedy generation on A with every token's arrival time; `duringRun` runs alongside. */
  async generate (prompt: number[], duringRun?: (failed: () => Error | undefined) => Promise<void>): Promise<Generation> {
    const tokens: number[] = []
    const at: number[] = []
    const run = this.a.request('generate', { model: this.model, promptIds: prompt, maxNewTokens: TOKENS, temperature: 0 }, {
      onStream: (p) => {
        at.push(performance.now())
        tokens.push(p.token as number)
      }
    })
    let failed: Error | undefined
    run.catch((err: Error) => { failed = err })
    if (duringRun != null) {
      await duringRun(() => failed).catch(async (err) => {
        await run
        throw err
      })
    }
    const result = await run
    return { tokens: result.tokens, at, result }
  }

  /** Retires `victim` (killed, its record lapsed) and starts a fresh holder of `span`. */
  async replace (victim: BenchDaemon, span: Span): Promise<void> {
    await victim.kill('SIGKILL')
    const key = `${span.start}-${span.end}`
    this.holders.set(key, (this.holders.get(key) ?? []).filter(n => n !== victim))
    await waitFor(`${victim.name}'s record to lapse`, async () => !(await this.spans()).some(s => s.peerId === victim.peerId), RECORD_TTL_MS * 10)
    await this.addHolder(span)
    await this.waitServing()
  }

  async stop (): Promise<void> {
    const all = [this.a, ...[...this.holders.values()].flat()].filter(n => n != null)
    await Promise.allSettled(all.map(async n => n.kill('SIGKILL')))
  }
}

function intervals (at: number[], from: number, to: number): number[] {
  const xs: number[] = []
  for (let i = Math.max(1, from); i < Math.min(at.length, to); i++) {
    xs.push(at[i] - at[i - 1])
  }
  return xs
}

async function runFault (mesh: Mesh, fault: Fault, prompt: number[], reference: number[]): Promise<RunFigures> {
  const span = SPAN_OF[fault]
  const key = `${span.start}-${span.end}`
  const candidates = mesh.holders.get(key) ?? []
  const before = new Map(await Promise.all(candidates.map(async n => [n.peerId, await mesh.steps(n)] as const)))
  let victim: BenchDaemon | undefined
  let faultAt = 0
  const gen = await mesh.generate(prompt, async (failed) => {
    victim = await waitFor(`a holder of [${key}) to compute ${ACT_AFTER} steps`, async () => {
      const err = failed()
      if (err != null) {
        throw err
      }
      for (const n of candidates) {
        if ((await mesh.steps(n)) - (before.get(n.peerId) ?? 0) >= ACT_AFTER) {
          return n
        }
      }
      return undefined
    }, 120_000, 5)
    const signal = ({ sigkill: 'SIGKILL', sigstop: 'SIGSTOP', garbage: 'SIGUSR2', slow: 'SIGUSR1' } as const)[fault]
    process.kill(victim.pid, signal)
    faultAt = performance.now()
  })
  const next = gen.at.findIndex(t => t > faultAt)
  const waits = next >= 0 ? [gen.at[next] - faultAt, ...intervals(gen.at, next + 1, gen.at.length)] : []
  const recoveries: any[] = gen.result.recoveries ?? []
  const r = recoveries[0]
  const figures: RunFigures = {
    fault,
    recoveryMs: waits.length > 0 ? Math.max(...waits) : Number.NaN,
    identical: JSON.stringify(gen.tokens) === JSON.stringify(reference),
    recoveries: recoveries.length,
    ...(r != null ? { reason: r.reason, replaceMs: r.ms, ...(r.deadlineMs != null ? { deadlineMs: r.deadlineMs } : {}) } : {}),
    tokenMsBefore: median(intervals(gen.at, 1, next)),
    tokenMsAfter: median(intervals(gen.at, next + 1, gen.at.length))
  }
  if (victim != null) {
    await mesh.replace(victim, span)
  }
  return figures
}

function summary (runs: RunFigures[]): Record<string, unknown> {
  const fault = runs[0]?.fault
  return {
    recoveryMs: round(median(runs.map(r => r.recoveryMs))),
    runsMs: runs.map(r => round(r.recoveryMs)),
    replaceMs: round(median(runs.flatMap(r => r.replaceMs != null ? [r.replaceMs] : []))),
    ...(runs.some(r => r.deadlineMs != null) ? { deadlineMs: median(runs.flatMap(r => r.deadlineMs != null ? [r.deadlineMs] : [])) } : {}),
    identical: runs.every(r => r.identical),
    recovered: runs.every(r => r.recoveries === 1 && r.reason === REASON_OF[fault as Fault])
  }
}

async function main (): Promise<void> {
  const expected = JSON.parse(await readFile(join(FIXTURE, 'expected.json'), 'utf8'))
  const prompt: number[] = expected.greedy.prompt
  const root = await mkdtemp(join(tmpdir(), 'blyd-failover-'))
  const mesh = new Mesh(root, await freePort())
  const t0 = performance.now()
  try {
    await mesh.startA()
    mesh.model = (await runJson(['model', 'import', FIXTURE, '--data-dir', mesh.a.dir])).modelId
    for (const span of [SPAN_OF.sigkill, SPAN_OF.sigkill, SPAN_OF.sigstop, SPAN_OF.sigstop]) {
      await mesh.addHolder(span)
    }
    await mesh.waitServing()
    out(`5 daemons up (A + 2 holders of [0, 2) + 2 of [2, 4)), step delay ${DELAY_MS} ms, ${TOKENS} new tokens, step timeout ${STEP_TIMEOUT_MS} ms`)

    // the uninterrupted reference, after one warm-up
    await mesh.generate(prompt)
    const clean = await mesh.generate(prompt)
    const reference = clean.tokens
    const healthy = intervals(clean.at, 1, clean.at.length)
    if (reference.length <= ACT_AFTER + 5) {
      throw new Error(`the reference stopped after ${reference.length} tokens: too few to fault after ${ACT_AFTER} steps`)
    }
    out(`healthy: ${reference.length} tokens, token interval p50 ${round(median(healthy))} ms, p99 ${round(quantile(healthy, 0.99))} ms, max ${round(Math.max(...healthy))} ms`)

    const adaptive: Record<string, RunFigures[]> = {}
    for (const fault of [...FAULTS, 'slow'] as const) {
      adaptive[fault] = []
      for (let i = 0; i < RUNS; i++) {
        const f = await runFault(mesh, fault, prompt, reference)
        adaptive[fault].push(f)
        out(`adaptive ${fault} #${i + 1}: longest wait for a token ${round(f.recoveryMs)} ms from the fault (${f.recoveries} failover${f.recoveries === 1 ? '' : 's'}${f.reason != null ? ` ${f.reason}` : ''}${f.deadlineMs != null ? `, deadline ${f.deadlineMs} ms` : ''}${f.replaceMs != null ? `, replacement ${round(f.replaceMs)} ms` : ''}), tokens ${f.identical ? 'identical' : 'DIFFER'}, interval ${round(f.tokenMsBefore)} -> ${round(f.tokenMsAfter)} ms`)
      }
    }

    // baseline: the fixed deadline of old, same daemons, A restarted
    await mesh.a.kill('SIGTERM')
    await mesh.startA(['--step-deadline-floor-ms', String(STEP_TIMEOUT_MS)])
    await mesh.waitServing()
    const baseline: Record<string, RunFigures[]> = {}
    for (const fault of FAULTS) {
      baseline[fault] = []
      for (let i = 0; i < BASELINE_RUNS; i++) {
        const f = await runFault(mesh, fault, prompt, reference)
        baseline[fault].push(f)
        out(`baseline (fixed ${STEP_TIMEOUT_MS} ms deadline) ${fault} #${i + 1}: longest wait for a token ${round(f.recoveryMs)} ms from the fault (${f.recoveries} failover${f.recoveries === 1 ? '' : 's'}${f.deadlineMs != null ? `, deadline ${f.deadlineMs} ms` : ''}), tokens ${f.identical ? 'identical' : 'DIFFER'}`)
      }
    }

    const slow = adaptive.slow
    const result = {
      bench: 'failover',
      daemons: 5,
      model: 'qwen3-tiny untied-f32 (4 layers)',
      cpus: cpus().length,
      loadavg: loadavg().map(x => round(x, 2)),
      tokens: reference.length,
      stepDelayMs: DELAY_MS,
      stepTimeoutMs: STEP_TIMEOUT_MS,
      runs: RUNS,
      baselineRuns: BASELINE_RUNS,
      // how often a healthy token took k times the median: what a hedge that fires at k x expected would replay for nothing
      healthy: { tokenMsP50: round(median(healthy)), tokenMsP99: round(quantile(healthy, 0.99)), tokenMsMax: round(Math.max(...healthy)), over2x: round(healthy.filter(x => x > 2 * median(healthy)).length / healthy.length, 3), over3x: round(healthy.filter(x => x > 3 * median(healthy)).length / healthy.length, 3) },
      adaptive: Object.fromEntries(FAULTS.map(f => [f, summary(adaptive[f])])),
      slow: {
        replaced: slow.filter(r => r.recoveries > 0).length,
        identical: slow.every(r => r.identical),
        tokenMsBefore: round(median(slow.map(r => r.tokenMsBefore))),
        tokenMsAfter: round(median(slow.map(r => r.tokenMsAfter)))
      },
      baseline: { rule: `fixed ${STEP_TIMEOUT_MS} ms per 32 positions`, ...Object.fromEntries(FAULTS.map(f => [f, summary(baseline[f])])) },
      ratios: Object.fromEntries(FAULTS.map(f => [f, round(median(adaptive[f].map(r => r.recoveryMs)) / median(baseline[f].map(r => r.recoveryMs)), 3)])),
      goal: {
        under2s: Object.fromEntries(FAULTS.map(f => [f, median(adaptive[f].map(r => r.recoveryMs)) < 2000])),
        identical: [...FAULTS, 'slow'].every(f => adaptive[f].every(r => r.identical)) && FAULTS.every(f => baseline[f].every(r => r.identical)),
        slowNotReplaced: slow.every(r => r.recoveries === 0)
      },
      seconds: round((performance.now() - t0) / 1000)
    }
    out(JSON.stringify(result))
  } finally {
    await mesh.stop()
    await rm(root, { recursive: true, force: true })
  }
}

await main()
