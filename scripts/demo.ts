/**
 * `npm start`: a four-node mesh on 127.0.0.1, end to end, in well under a
 * minute. It writes a small Qwen3 checkpoint with RANDOM weights (the text it
 * generates is meaningless; the point is the path it takes), starts four
 * `blyd` daemons as child processes in their own temp data dirs (OS-chosen
 * ports, addresses read from `blyd status --json`), imports the model on
 * node 1, lets nodes 2-4 sync it over the network and serve a third of the
 * layers each (--layers), waits until the live spans cover every layer, then
 * streams a generation from node 1 through all three stages and prints the
 * route, each stage's share of the time and tokens/s. Everything is stopped
 * and the temp dirs removed on exit or Ctrl-C.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { IpcClient } from '../src/daemon/ipc-client.ts'
import type { RequestArgs } from '../src/daemon/ipc-client.ts'
import type { IpcMethodName, IpcMethods } from '../src/protocols/ipc.ts'
import type { ChildProcess } from 'node:child_process'

const BIN = fileURLToPath(new URL('../bin/blyd.js', import.meta.url))
const LAYERS = 6
const SPANS = ['0-2', '2-4', '4-6']
const DEMO_MODEL = ['--layers', String(LAYERS), '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--head-dim', '16', '--intermediate', '128', '--seed', '7']
const PROMPT = 'The mesh carries every layer from peer to peer'
const MAX_NEW_TOKENS = 48
const READY_TIMEOUT_MS = 40_000

const out = (text: string): void => { process.stdout.write(text) }

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

async function blyd (args: string[]): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const code = await new Promise<number | null>(resolve => { child.on('close', resolve) })
  if (code !== 0) {
    throw new Error(`blyd ${args.join(' ')} failed (${code}): ${stderr.trim()}`)
  }
  return stdout
}

async function request<M extends IpcMethodName> (socket: string, method: M, ...args: RequestArgs<IpcMethods[M]>): Promise<IpcMethods[M]['result']> {
  const client = await IpcClient.connect({ socketPath: socket })
  try {
    return await client.request(method, ...args)
  } finally {
    client.close()
  }
}

interface DemoNode {
  name: string
  dir: string
  child: ChildProcess
  log: string
  peerId?: string
  addr?: string
}

class Demo {
  private readonly nodes: DemoNode[] = []
  private root = ''
  private cleaning?: Promise<void>

  async run (): Promise<void> {
    const t0 = Date.now()
    this.root = await mkdtemp(join(tmpdir(), 'blyd-demo-'))
    const ckpt = join(this.root, 'checkpoint')
    await blyd(['model', 'init-demo', ckpt, ...DEMO_MODEL, '--json'])
    out(`wrote a ${LAYERS}-layer Qwen3 checkpoint with RANDOM weights (its text is meaningless) to ${ckpt}\n`)

    const n1 = await this.start('node1', [])
    const imported = JSON.parse(await blyd(['model', 'import', ckpt, '--data-dir', n1.dir, '--json']))
    const model: string = imported.modelId
    out(`node1 imported model ${model.slice(0, 16)}... as ${imported.blocks} blocks\n`)

    await Promise.all(SPANS.map(async (span, i) => this.start(`node${i + 2}`, ['--bootstrap', n1.addr as string, '--model', model, '--layers', span])))
    out('nodes 2-4 sync the blocks over the network and serve layers ' + SPANS.map((s, i) => `${s} (node${i + 2})`).join(', ') + '\n')

    const deadline = Date.now() + READY_TIMEOUT_MS
    while (true) {
      const peers = await request(join(n1.dir, 'blyd.sock'), 'peers', { model })
      const covered = new Set<number>()
      for (const s of peers.spans) {
        for (let l = s.start; l < s.end; l++) {
          covered.add(l)
        }
      }
      if (covered.size === LAYERS) {
        break
      }
      if (Date.now() > deadline) {
        throw new Error(`the live spans cover ${covered.size} of ${LAYERS} layers after ${READY_TIMEOUT_MS} ms`)
      }
      await sleep(300)
    }
    out(`every layer is served (${((Date.now() - t0) / 1000).toFixed(1)} s since start); generating from node1 through the mesh:\n\n`)

    const result = await request(join(n1.dir, 'blyd.sock'), 'generate', { model, prompt: PROMPT, maxNewTokens: MAX_NEW_TOKENS, temperature: 0.8, seed: 1 }, {
      onStream: p => { out(typeof p.text === 'string' ? p.text : `${String(p.token)} `) }
    })
    out('\n\n')
    const names = new Map(this.nodes.map(n => [n.peerId, n.name]))
    const route = result.route ?? []
    const total = route.reduce((a, h) => a + (h.ms ?? 0), 0) + (result.localMs ?? 0)
    out(`route (${result.via ?? 'local'}):\n`)
    for (const hop of route) {
      const share = total > 0 ? (100 * (hop.ms ?? 0) / total).toFixed(1) : '0'
      out(`  layers [${hop.start}, ${hop.end})  ${names.get(hop.peerId) ?? '?'} ${hop.peerId}  ${(hop.ms ?? 0).toFixed(1)} ms  ${share}% of the time\n`)
    }
    const localShare = total > 0 ? (100 * (result.localMs ?? 0) / total).toFixed(1) : '0'
    out(`  embedding + head on node1: ${(result.localMs ?? 0).toFixed(1)} ms  ${localShare}%\n`)
    out(`${result.tokens.length} tokens (${result.promptTokens} prompt tokens), ${result.tokensPerSecond.toFixed(1)} tokens/s, backend ${result.backend}, ${((Date.now() - t0) / 1000).toFixed(1)} s in all\n`)
  }

  private async start (name: string, args: string[]): Promise<DemoNode> {
    const dir = join(this.root, name)
    const child = spawn(process.execPath, [BIN, 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'warn', ...args], { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    const node: DemoNode = { name, dir, child, log: '' }
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { node.log += s })
    this.nodes.push(node)
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (true) {
      if (child.exitCode != null || child.signalCode != null) {
        throw new Error(`${name} exited: ${node.log.trim()}`)
      }
      try {
        const status = await request(join(dir, 'blyd.sock'), 'status')
        node.peerId = status.peerId
        node.addr = status.addrs?.[0]
        break
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`${name} did not answer in ${READY_TIMEOUT_MS} ms: ${(err as Error).message}`)
        }
        await sleep(100)
      }
    }
    out(`${name} started: ${node.addr ?? '(no address)'}\n`)
    return node
  }

  /** SIGTERM every daemon (SIGKILL after 10 s), then remove the temp dirs. */
  async cleanup (): Promise<void> {
    this.cleaning ??= (async () => {
      await Promise.all(this.nodes.map(async n => {
        if (n.child.exitCode != null || n.child.signalCode != null) {
          return
        }
        const exited = new Promise(resolve => { n.child.once('exit', resolve) })
        n.child.kill('SIGTERM')
        const timer = setTimeout(() => { n.child.kill('SIGKILL') }, 10_000)
        await exited
        clearTimeout(timer)
      }))
      if (this.root !== '') {
        await rm(this.root, { recursive: true, force: true })
      }
    })()
    return this.cleaning
  }
}

const demo = new Demo()
const onSignal = (signal: NodeJS.Signals): void => {
  out(`\n${signal}: stopping the daemons\n`)
  demo.cleanup().finally(() => { process.exit(130) })
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)
try {
  await demo.run()
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`)
  process.exitCode = 1
} finally {
  await demo.cleanup()
}
