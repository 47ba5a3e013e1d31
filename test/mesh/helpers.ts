import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ipcRequest, startDaemon } from '../daemon/helpers.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'

/**
 * Poll `check` until it returns something other than undefined/false, and
 * return that. A check that throws counts as not yet; on timeout the last
 * error is part of the message.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, pollMs = 200): Promise<T> {
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
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last != null ? ` (last error: ${(last as Error).message})` : ''}`)
    }
    await sleep(pollMs)
  }
}

/** A `blyd` daemon of a mesh test, with what the tests address it by. */
export interface MeshNode {
  name: string
  dir: string
  daemon: DaemonProcess
  peerId: string
  addr: string
}

/** Start a daemon in `root/name` (cpu backend unless `args` set --backend, no worker threads unless they set --workers) and read its peer id and first address. */
export async function startMeshNode (root: string, name: string, args: string[] = [], env: Record<string, string> = {}): Promise<MeshNode> {
  const dir = join(root, name)
  const workers = args.includes('--workers') ? [] : ['--workers', '0']
  const backend = args.includes('--backend') ? [] : ['--backend', 'cpu']
  const daemon = await startDaemon(dir, [...backend, ...workers, ...args], env)
  const status = await ipcRequest(daemon.socketPath, 'status')
  return { name, dir, daemon, peerId: status.peerId, addr: status.addrs[0] }
}

/**
 * What a failed wait on `node` should say: its serving state (and what it
 * waits for), its last announcement, its connections, chain counts and
 * catch-up counters, read over IPC now (a node that no longer answers says so).
 */
export async function describeNode (node: MeshNode): Promise<string> {
  try {
    const status = await ipcRequest(node.daemon.socketPath, 'status')
    const net = await ipcRequest(node.daemon.socketPath, 'net.status')
    const s = status.serving
    return JSON.stringify({
      node: node.name,
      serving: s == null ? null : { state: s.state, detail: s.detail, announced: s.announced },
      connections: status.connections,
      chain: status.chain?.counts,
      sync: { syncs: net.sync.syncs, syncErrors: net.sync.syncErrors, syncRetries: net.sync.syncRetries, blocksAdded: net.sync.blocksAdded, chunkErrors: net.sync.chunkErrors }
    })
  } catch (err) {
    return `${node.name}: no status (${(err as Error).message}; running: ${String(node.daemon.running)})`
  }
}

/** waitFor, whose timeout error also describes `nodes` (describeNode) as they are then. */
export async function waitForNodes<T> (nodes: MeshNode[], what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, pollMs = 200): Promise<T> {
  try {
    return await waitFor(what, check, timeoutMs, pollMs)
  } catch (err) {
    const reports = await Promise.all(nodes.map(describeNode))
    throw new Error(`${(err as Error).message}\n${reports.join('\n')}`, { cause: err })
  }
}
