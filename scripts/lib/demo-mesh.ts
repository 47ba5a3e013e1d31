/**
 * What the demos (`npm start`, `npm run demo:train`) share: one IPC request
 * to a daemon, waitFor, and `DemoMesh`: `blyd` commands and daemons run as
 * child processes (flags only: no BLYD_* from the caller), the daemons on
 * 127.0.0.1 in their own data dirs under one temp dir (OS-chosen ports,
 * addresses read from the IPC `status`); cleanup() stops the commands, then
 * the daemons (SIGTERM, SIGKILL after 10 s), then removes the temp dir. `runDemo` runs a demo with
 * that cleanup on success, failure and Ctrl-C.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import type { RequestArgs } from '../../src/daemon/ipc-client.ts'
import type { IpcMethodName, IpcMethods } from '../../src/protocols/ipc.ts'
import type { ChildProcess } from 'node:child_process'

export const BIN = fileURLToPath(new URL('../../bin/blyd.js', import.meta.url))
/** how long a daemon may take to answer its first `status` */
export const READY_TIMEOUT_MS = 40_000

export const out = (text: string): void => { process.stdout.write(text) }

/** Children get no BLYD_* from the caller: each daemon is configured by flags only. */
function childEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_') && k !== 'NODE_OPTIONS') {
      env[k] = v
    }
  }
  return env
}

/** One IPC request on a fresh connection. */
export async function request<M extends IpcMethodName> (socket: string, method: M, ...args: RequestArgs<IpcMethods[M]>): Promise<IpcMethods[M]['result']> {
  const client = await IpcClient.connect({ socketPath: socket })
  try {
    return await client.request(method, ...args)
  } finally {
    client.close()
  }
}

/** Polls `check` every `everyMs` until it gives a value other than undefined; throws naming `what` (or what it returns then) after `timeoutMs`. */
export async function waitFor<T> (what: string | (() => string), check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 300): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = await check()
    if (value !== undefined) {
      return value
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`)
    }
    await sleep(everyMs)
  }
}

export interface DemoNode {
  name: string
  dir: string
  /** its IPC socket */
  socket: string
  child: ChildProcess
  log: string
  peerId: string
  addr: string
}

export class DemoMesh {
  readonly nodes: DemoNode[] = []
  /** `blyd` commands running (an import, a data add): stopped by cleanup() before the daemons */
  private readonly commands = new Set<ChildProcess>()
  private root = ''
  private cleaning?: Promise<void>

  /** Runs `blyd ARGS` to the end; its stdout, or an error with its stderr when it exits non-zero. */
  async blyd (args: string[]): Promise<string> {
    if (this.cleaning != null) {
      throw new Error(`stopping: blyd ${args[0]} not run`)
    }
    const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    this.commands.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const code = await new Promise<number | null>(resolve => { child.on('close', resolve) })
    this.commands.delete(child)
    if (code !== 0) {
      throw new Error(`blyd ${args.join(' ')} failed (${code}): ${stderr.trim()}`)
    }
    return stdout
  }

  /** `blyd ARGS --json`, parsed. */
  async blydJson (args: string[]): Promise<any> {
    return JSON.parse(await this.blyd([...args, '--json']))
  }

  /** Makes the temp dir every node's data dir goes under; returns it. */
  async open (prefix: string): Promise<string> {
    this.root = await mkdtemp(join(tmpdir(), prefix))
    return this.root
  }

  /** A path under the temp dir. */
  path (name: string): string {
    return join(this.root, name)
  }

  /** Starts `blyd start` in data dir `name` on 127.0.0.1 (port 0) and waits until it answers `status` (none once cleanup began). */
  async start (name: string, args: string[]): Promise<DemoNode> {
    if (this.cleaning != null) {
      throw new Error(`stopping: ${name} not started`)
    }
    const dir = this.path(name)
    const socket = join(dir, 'blyd.sock')
    const child = spawn(process.execPath, [BIN, 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'warn', ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const node: DemoNode = { name, dir, socket, child, log: '', peerId: '', addr: '' }
    // its log lines (stdout) and errors (stderr), for when it fails
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { node.log += s })
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { node.log += s })
    this.nodes.push(node)
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (true) {
      if (child.exitCode != null || child.signalCode != null) {
        throw new Error(`${name} exited: ${node.log.trim()}`)
      }
      try {
        const status = await request(socket, 'status')
        node.peerId = status.peerId
        node.addr = status.addrs?.[0] ?? ''
        break
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`${name} did not answer in ${READY_TIMEOUT_MS} ms: ${(err as Error).message}`)
        }
        await sleep(100)
      }
    }
    out(`${name} started: ${node.addr === '' ? '(no address)' : node.addr}\n`)
    return node
  }

  /** Waits until the live spans that `node` sees cover layers [0, layers) of `model`. */
  async waitCovered (node: DemoNode, model: string, layers: number, timeoutMs = READY_TIMEOUT_MS, version?: string): Promise<void> {
    let seen = ''
    await waitFor(() => `the live spans to cover ${layers} layers${version != null ? ` in version ${version.slice(0, 12)}` : ''} (seen: ${seen})`, async () => {
      const peers = await request(node.socket, 'peers', { model })
      seen = peers.spans.map(s => `[${s.start}, ${s.end}) ${s.version?.slice(0, 12) ?? '?'}`).join(', ')
      const covered = new Set<number>()
      for (const s of peers.spans) {
        if (version != null && s.version !== version) {
          continue
        }
        for (let l = s.start; l < s.end; l++) {
          covered.add(l)
        }
      }
      return covered.size === layers ? true : undefined
    }, timeoutMs)
  }

  /**
   * Stop every `blyd` command still running (one would write into a data dir
   * after it is removed), then every daemon: SIGTERM, SIGKILL after 10 s;
   * then remove the temp dir. No command starts once this began.
   */
  async cleanup (): Promise<void> {
    this.cleaning ??= (async () => {
      await Promise.all([...this.commands].map(stop))
      await Promise.all(this.nodes.map(async n => stop(n.child)))
      if (this.root !== '') {
        await rm(this.root, { recursive: true, force: true })
      }
    })()
    return this.cleaning
  }
}

/** SIGTERM `child` (SIGKILL after 10 s) and wait until it exited. */
async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) {
    return
  }
  const exited = new Promise(resolve => { child.once('exit', resolve) })
  child.kill('SIGTERM')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
  await exited
  clearTimeout(timer)
}

/**
 * Runs `demo` on a fresh DemoMesh; on Ctrl-C / SIGTERM stops the daemons
 * and exits 130; on failure prints the error (exit code 1); always cleans up.
 */
export async function runDemo (demo: (mesh: DemoMesh) => Promise<void>): Promise<void> {
  const mesh = new DemoMesh()
  const onSignal = (signal: NodeJS.Signals): void => {
    out(`\n${signal}: stopping the daemons\n`)
    mesh.cleanup().finally(() => { process.exit(130) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    await demo(mesh)
  } catch (err) {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`)
    process.exitCode = 1
  } finally {
    await mesh.cleanup()
  }
}
