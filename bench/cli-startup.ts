// CLI start-up bench: the wall time of short `blyd` commands, each a fresh
// process as a user runs them, against `node -e 0` (the cost of starting
// Node itself, the baseline of the ratios) measured in the same run. The
// commands run interleaved (one of each per round) so that the load of a
// shared machine falls on all of them alike; the figures are the median and
// the fastest of `--runs` rounds.
//
//   npm run bench -- cli-startup [--runs 10] [--compare /other/checkout/bin/blyd.js]
//
// Commands: `blyd --help`, `blyd --version`, and `blyd status` against a
// `blyd start` daemon on a fresh temp data dir (started once, killed at the
// end). --compare adds the same commands run through another checkout's bin
// (e.g. the commit before a change), so before and after come from one sitting.
// With NODE_COMPILE_CACHE set, every process uses that compile cache (the
// bins' code is then compared alone); without, each bin runs as a user runs it.
// The last line printed is one JSON object.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { BIN, startDaemon } from './lib/daemons.ts'
import type { BenchDaemon } from './lib/daemons.ts'

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    compare: { type: 'string' }
  }
})

const runs = Number(opts.runs)
if (!Number.isSafeInteger(runs) || runs < 1) {
  throw new Error(`--runs must be a positive integer (got ${opts.runs})`)
}

function cleanEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_') && k !== 'NODE_OPTIONS') {
      env[k] = v
    }
  }
  return env
}

/** ms from spawn to exit of `node ARGS` (throws when it fails) */
async function timeRun (args: string[]): Promise<number> {
  const start = process.hrtime.bigint()
  const child = spawn(process.execPath, args, { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const [code] = await once(child, 'close') as [number | null]
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (code !== 0) {
    throw new Error(`node ${args.join(' ')} exited ${code}: ${stderr}`)
  }
  return ms
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

const round1 = (x: number): number => Math.round(x * 10) / 10

const dir = await mkdtemp(join(tmpdir(), 'blyd-bench-'))
let daemon: BenchDaemon | undefined
try {
  daemon = await startDaemon('a', join(dir, 'a'))
  const dataDir = ['--data-dir', join(dir, 'a')]
  const bins: Array<[string, string]> = [['', BIN]]
  if (opts.compare != null) {
    bins.push(['compare ', resolve(opts.compare)])
  }
  const cases: Array<[string, string[]]> = [['node -e 0', ['-e', '0']]]
  for (const [prefix, bin] of bins) {
    cases.push([`${prefix}blyd --help`, [bin, '--help']])
    cases.push([`${prefix}blyd --version`, [bin, '--version']])
    cases.push([`${prefix}blyd status`, [bin, 'status', ...dataDir]])
  }
  // one untimed round first: fills the OS file cache (and Node's compile cache where enabled)
  for (const [, args] of cases) {
    await timeRun(args)
  }
  const times = new Map<string, number[]>(cases.map(([name]) => [name, []]))
  for (let r = 0; r < runs; r++) {
    for (const [name, args] of cases) {
      times.get(name)?.push(await timeRun(args))
    }
  }
  const base = median(times.get('node -e 0') ?? [])
  const figures: Record<string, { medianMs: number, minMs: number, ratio: number }> = {}
  for (const [name, xs] of times) {
    figures[name] = { medianMs: round1(median(xs)), minMs: round1(Math.min(...xs)), ratio: round1(median(xs) / base) }
    process.stdout.write(`${name.padEnd(24)} median ${figures[name].medianMs.toFixed(1)} ms  min ${figures[name].minMs.toFixed(1)} ms  ${figures[name].ratio.toFixed(1)}x node -e 0\n`)
  }
  process.stdout.write(JSON.stringify({
    bench: 'cli-startup',
    node: process.version,
    runs,
    loadavg: loadavg().map(round1),
    // null: each bin as a user runs it (this checkout's bin/blyd.js enables its own compile cache)
    compileCacheEnv: process.env.NODE_COMPILE_CACHE ?? null,
    baselineMs: round1(base),
    ...(opts.compare != null ? { compare: resolve(opts.compare) } : {}),
    figures
  }) + '\n')
} finally {
  await daemon?.kill()
  await rm(dir, { recursive: true, force: true })
}
