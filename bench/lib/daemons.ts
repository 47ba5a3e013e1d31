/**
 * `blyd start` daemons for benches: child processes on 127.0.0.1 (OS-chosen
 * ports unless told), a scrubbed environment (no BLYD_* or NODE_OPTIONS
 * from the caller), IPC requests over their sockets, and the CLI run to
 * completion. The caller kills what it started (killAll).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import type { RequestArgs } from '../../src/daemon/ipc-client.ts'
import type { IpcMethodName, IpcMethods } from '../../src/protocols/ipc.ts'
import type { ChildProcess } from 'node:child_process'

export const BIN = fileURLToPath(new URL('../../bin/blyd.js', import.meta.url))

function cleanEnv (extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_') && k !== 'NODE_OPTIONS') {
      env[k] = v
    }
  }
  return { ...env, BLYD_LISTEN: '/ip4/127.0.0.1/tcp/0', ...extra }
}

/** A TCP port free on 127.0.0.1 now (for a daemon that must keep its address over a restart). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

/** Run `blyd ARGS --json` to completion and parse its stdout; throws with stderr when it fails. */
export async function runJson<T = any> (args: string[], timeoutMs = 120_000): Promise<T> {
  const child = spawn(process.execPath, [BIN, ...args, '--json'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const [code] = await once(child, 'close') as [number | null]
  clearTimeout(timer)
  if (code !== 0) {
    throw new Error(`blyd ${args.join(' ')} exited ${code}: ${stderr}`)
  }
  return JSON.parse(stdout)
}

export class BenchDaemon {
  readonly name: string
  readonly dir: string
  readonly child: ChildProcess
  readonly exited: Promise<unknown>
  peerId: string
  addr: string
  stderr: string

  constructor (name: string, dir: string, args: string[], env: Record<string, string>) {
    this.name = name
    this.dir = dir
    this.peerId = ''
    this.addr = ''
    this.stderr = ''
    this.child = spawn(process.execPath, [BIN, 'start', '--data-dir', dir, '--backend', 'cpu', '--workers', '0', ...args], { env: cleanEnv(env), stdio: ['ignore', 'ignore', 'pipe'] })
    this.child.stderr?.setEncoding('utf8').on('data', (s: string) => { this.stderr = (this.stderr + s).slice(-20_000) })
    this.exited = once(this.child, 'exit')
  }

  get pid (): number {
    return this.child.pid ?? -1
  }

  get running (): boolean {
    return this.child.exitCode == null && this.child.signalCode == null
  }

  get socketPath (): string {
    return join(this.dir, 'blyd.sock')
  }

  async request<M extends IpcMethodName> (method: M, ...args: RequestArgs<IpcMethods[M]>): Promise<IpcMethods[M]['result']> {
    const client = await IpcClient.connect({ socketPath: this.socketPath })
    try {
      return await client.request(method, ...args)
    } finally {
      client.close()
    }
  }

  /** Waits until the daemon answers `status`; reads its peer id and first address. */
  async ready (timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (true) {
      if (!this.running) {
        throw new Error(`${this.name} exited before it was ready: ${this.stderr}`)
      }
      try {
        const status = await this.request('status')
        if (status.addrs == null) {
          throw new Error('status names no addresses yet')
        }
        this.peerId = status.peerId
        this.addr = status.addrs[0]
        return
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`${this.name} not ready after ${timeoutMs} ms: ${(err as Error).message}\n${this.stderr}`)
        }
        await sleep(50)
      }
    }
  }

  /** Sends `signal` (SIGKILL by default; a stopped daemon is continued first) and waits for the exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.running) {
      process.kill(this.pid, 'SIGCONT')
      this.child.kill(signal)
    }
    await this.exited
  }
}

export async function startDaemon (name: string, dir: string, args: string[] = [], env: Record<string, string> = {}): Promise<BenchDaemon> {
  const daemon = new BenchDaemon(name, dir, args, env)
  try {
    await daemon.ready()
  } catch (err) {
    await daemon.kill()
    throw err
  }
  return daemon
}

/** Polls `check` until it returns something other than undefined / false; throws naming `what` after `timeoutMs`. */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000, pollMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (true) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) {
        return value
      }
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last != null ? ` (${(last as Error).message})` : ''}`)
    }
    await sleep(pollMs)
  }
}
