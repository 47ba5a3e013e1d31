/**
 * Helpers for tests that run the real `blyd` CLI in child processes.
 * Children get a scrubbed environment (no BLYD_* leaks) and are always killed
 * by `stopAll` in after hooks.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import type { AnyIpcMethods } from '../../src/protocols/ipc.ts'
import type { ChildProcess } from 'node:child_process'

export const BIN = fileURLToPath(new URL('../../bin/blyd.js', import.meta.url))

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * The environment of a child: no BLYD_* from the test runner, and no
 * NODE_OPTIONS (aegir sets --experimental-transform-types there, which a user's
 * `blyd` does not have: children must run on plain type stripping). Daemons
 * listen on 127.0.0.1 with an OS-chosen port unless a test says otherwise.
 */
function cleanEnv (extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_') && k !== 'NODE_OPTIONS') {
      env[k] = v
    }
  }
  return { ...env, BLYD_LISTEN: '/ip4/127.0.0.1/tcp/0', ...extra }
}

/** A short temp dir (Unix socket paths are limited to ~100 bytes). */
/** The error `p` rejects with; throws when it resolves instead. */
export async function rejection (p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

export async function makeTempDir (): Promise<string> {
  return mkdtemp(join(tmpdir(), 'blyd-'))
}

export async function removeDir (dir: string | undefined): Promise<void> {
  if (dir != null) {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Run `blyd ARGS` to completion (killed after `timeoutMs`). */
export async function runCli (args: string[], options: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, options.timeoutMs ?? 60_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => {
    child.on('close', (c, s) => { resolve([c, s]) })
  })
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

/**
 * `fn` over `items`, `concurrency` at a time; the results in the order of
 * `items`. For independent `blyd` commands only: ones that share no state
 * (refused before they touch a data dir, or read-only queries to a running
 * daemon). A command's start is mostly one core's work, so two at a time keep
 * both cores of a 2-core machine busy.
 */
export async function mapConcurrently<T, R> (items: readonly T[], fn: (item: T, index: number) => Promise<R>, concurrency = 2): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  let failed = false
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        results[i] = await fn(items[i], i)
      } catch (err) {
        failed = true // the other lanes start nothing more
        throw err
      }
    }
  }))
  return results
}

/** Run independent `blyd` commands two at a time (see mapConcurrently); the results in order. */
export async function runCliAll (calls: ReadonlyArray<{ args: string[], env?: Record<string, string> }>): Promise<CliResult[]> {
  return mapConcurrently(calls, async ({ args, env }) => runCli(args, env != null ? { env } : {}))
}

/** Run `blyd ARGS --json` and parse stdout; throws with stderr when it fails. */
export async function runJson<T = any> (args: string[], options: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<T> {
  const r = await runCli([...args, '--json'], options)
  if (r.code !== 0) {
    throw new Error(`blyd ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  }
  return JSON.parse(r.stdout)
}

/** A `blyd start` child process. */
export class DaemonProcess {
  readonly dataDir: string
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stderr: string

  constructor (dataDir: string, args: string[] = [], env: Record<string, string> = {}) {
    this.dataDir = dataDir
    this.stderr = ''
    this.child = spawn(process.execPath, [BIN, 'start', '--data-dir', dataDir, ...args], { env: cleanEnv(env), stdio: ['ignore', 'ignore', 'pipe'] })
    this.child.stderr?.setEncoding('utf8').on('data', (s: string) => { this.stderr += s })
    this.exited = new Promise(resolve => {
      this.child.on('exit', (code, signal) => { resolve({ code, signal }) })
    })
  }

  get pid (): number {
    return this.child.pid ?? -1
  }

  get socketPath (): string {
    return join(this.dataDir, 'blyd.sock')
  }

  get running (): boolean {
    return this.child.exitCode == null && this.child.signalCode == null
  }

  /** Wait until the daemon answers `status` over its socket. */
  async ready (timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (true) {
      if (!this.running) {
        throw new Error(`daemon exited before it was ready: ${this.stderr}`)
      }
      try {
        const client = await IpcClient.connect({ socketPath: this.socketPath })
        try {
          await client.request('status')
          return
        } finally {
          client.close()
        }
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`daemon not ready after ${timeoutMs} ms: ${(err as Error).message}\n${this.stderr}`)
        }
        await sleep(50)
      }
    }
  }

  /** SIGKILL if still running and wait for the exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.running) {
      this.child.kill(signal)
    }
    await this.exited
  }
}

/** Start a daemon and wait until it answers. */
export async function startDaemon (dataDir: string, args: string[] = [], env: Record<string, string> = {}): Promise<DaemonProcess> {
  const daemon = new DaemonProcess(dataDir, args, env)
  try {
    await daemon.ready()
  } catch (err) {
    await daemon.kill()
    throw err
  }
  return daemon
}

/** Request `method` over a fresh connection. */
export async function ipcRequest<T = any> (socketPath: string, method: string, params?: Record<string, unknown>): Promise<T> {
  // any method, any params: tests send bad ones on purpose
  const client = await IpcClient.connect<AnyIpcMethods>({ socketPath })
  try {
    return await client.request(method, params)
  } finally {
    client.close()
  }
}

/** Resident memory of a process, bytes (Linux /proc): now (VmRSS) and at its peak (VmHWM). */
export async function processMemory (pid: number): Promise<{ rss: number, hwm: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string): number => {
    const m = new RegExp(`${name}:\\s+(\\d+) kB`).exec(text)
    if (m == null) {
      throw new Error(`no ${name} in /proc/${pid}/status`)
    }
    return Number(m[1]) * 1024
  }
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/**
 * Start measuring a process's RSS growth: resets its peak (VmHWM) to its RSS
 * now (Linux clear_refs 5). The returned function gives the growth of the
 * peak since, in bytes, spikes between samples included.
 */
export async function rssGrowth (pid: number): Promise<() => Promise<number>> {
  await writeFile(`/proc/${pid}/clear_refs`, '5')
  const before = await processMemory(pid)
  return async () => (await processMemory(pid)).hwm - before.rss
}

/**
 * Call `read` every `everyMs` until `done` holds for its value or `timeoutMs`
 * passed; returns the last value either way (the caller asserts on it).
 */
export async function pollUntil<T> (read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = await read()
    if (done(value) || Date.now() > deadline) {
      return value
    }
    await sleep(everyMs)
  }
}
