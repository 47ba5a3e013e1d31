/**
 * Failover with replay, with real `blyd` daemons on 127.0.0.1. Node A imports
 * the 4-layer fixture and generates; B holds layers 0-2 and C layers 2-4 (the
 * fallback route). Each case adds one node holding all of 0-4 (a one-hop
 * route, so the generation takes it), made to misbehave mid-generation:
 * SIGKILLed (stream closes), SIGSTOPped (step deadline), or sending NaN
 * RESULTs through the test-only fault-injection switch. The greedy tokens
 * must equal the reference and the result must name the failover.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson, startDaemon } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { waitFor } from './helpers.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'
import type { Expected } from '../model/fixtures.ts'

const RECORD_TTL_MS = 2000
/** the generating node's step deadline: a SIGSTOPped stage is replaced after it */
const STEP_TIMEOUT_MS = 1500
/** fault injection: each RESULT of the node under test waits this long, so the fault lands mid-generation */
const STEP_DELAY_MS = 150
/** act once the node under test computed this many steps (the prefill plus some tokens) */
const ACT_AFTER_STEPS = 6

interface Node {
  name: string
  dir: string
  daemon: DaemonProcess
  peerId: string
  addr: string
}

describe('mesh failover: a stage that dies, stalls or answers garbage mid-generation', function () {
  this.timeout(120_000)
  let root: string
  const nodes: Node[] = []
  let model: string
  let expected: Expected
  let a: Node
  let b: Node
  let c: Node

  async function start (name: string, args: string[] = [], env: Record<string, string> = {}): Promise<Node> {
    const dir = join(root, name)
    const daemon = await startDaemon(dir, ['--backend', 'cpu', '--workers', '0', ...args], env)
    const status = await ipcRequest(daemon.socketPath, 'status')
    const node = { name, dir, daemon, peerId: status.peerId, addr: status.addrs[0] }
    nodes.push(node)
    return node
  }

  async function serve (name: string, layers: string, env: Record<string, string> = {}): Promise<Node> {
    return start(name, ['--bootstrap', a.addr, '--model', model, '--layers', layers, '--record-ttl-ms', String(RECORD_TTL_MS)], env)
  }

  async function spans (): Promise<Array<{ peerId: string, start: number, end: number, source: string, rttMs: number | null }>> {
    return (await ipcRequest(a.daemon.socketPath, 'peers', { model })).spans
  }

  async function waitServing (n: Node, start: number, end: number): Promise<void> {
    await waitFor(`${n.name} to serve [${start}, ${end}) and A to see it`, async () => (await spans()).some(s => s.peerId === n.peerId && s.start === start && s.end === end && s.source === 'direct'), 60_000)
  }

  /**
   * Routing weighs RTT: the first ping of a fresh connection can take tens of
   * ms, which makes the one-hop route dearer than B + C. Wait until A's view
   * of `n` has a warm RTT (one hop at most 1 ms above the best of B and C).
   */
  async function waitWarm (n: Node): Promise<void> {
    await waitFor(`A to see ${n.name} with a warm RTT`, async () => {
      const live = await spans()
      const rtt = (id: string): number => live.find(s => s.peerId === id)?.rttMs ?? Infinity
      return rtt(n.peerId) <= Math.min(rtt(b.peerId), rtt(c.peerId)) + 1
    }, 30_000)
  }

  async function steps (n: Node): Promise<number> {
    return (await ipcRequest(n.daemon.socketPath, 'status')).serving?.steps ?? 0
  }

  /** Greedy generation on A; `fault` (if any) runs once `target` computed ACT_AFTER_STEPS steps. */
  async function generateWithFault (target: Node, fault?: () => Promise<void> | void): Promise<any> {
    const { prompt, tokens } = expected.greedy
    const gen = runJson(['generate', '--model', model, '--prompt-ids', prompt.join(','), '--temperature', '0', '--max-new-tokens', String(tokens.length), '--json', '--data-dir', a.dir], { timeoutMs: 60_000 })
    if (fault == null) {
      return gen
    }
    let failed: unknown
    gen.catch((err) => { failed = err })
    await waitFor(`${target.name} to compute ${ACT_AFTER_STEPS} steps`, async () => failed != null ? Promise.reject(failed) : (await steps(target)) >= ACT_AFTER_STEPS, 30_000, 20)
    await fault()
    return gen
  }

  /** Kill a node and wait until A no longer lists its span (its record lapses). */
  async function retire (n: Node): Promise<void> {
    if (n.daemon.running) {
      process.kill(n.daemon.pid, 'SIGCONT')
    }
    await n.daemon.kill('SIGKILL')
    await waitFor(`${n.name}'s record to lapse`, async () => !(await spans()).some(s => s.peerId === n.peerId), RECORD_TTL_MS * 6)
  }

  function checkRecovered (gen: any, target: Node, reason: string): void {
    expect(gen.tokens).to.deep.equal(expected.greedy.tokens)
    expect(gen.via).to.equal('mesh')
    expect(gen.recoveries).to.be.an('array').with.lengthOf(1)
    const [r] = gen.recoveries
    expect(r).to.include({ peerId: target.peerId, reason, start: 0, end: 4 })
    // the lost span is split over the two holders of its halves
    expect(r.replacement).to.deep.equal([{ peerId: b.peerId, start: 0, end: 2 }, { peerId: c.peerId, start: 2, end: 4 }])
    expect(r.positions).to.be.at.least(expected.greedy.prompt.length)
    expect(r.replayDiff).to.be.at.most(1e-2)
    expect(gen.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[b.peerId, 0, 2], [c.peerId, 2, 4]])
    process.stdout.write(`      ${reason}: recovered in ${r.ms} ms (${r.positions} positions replayed, replay diff ${r.replayDiff})\n`)
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
    a = await start('a', ['--step-timeout-ms', String(STEP_TIMEOUT_MS)])
    model = (await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', a.dir])).modelId
    b = await serve('b', '0-2')
    c = await serve('c', '2-4')
    await waitServing(b, 0, 2)
    await waitServing(c, 2, 4)
  })

  after(async () => {
    for (const n of nodes) {
      if (n.daemon.running) {
        process.kill(n.daemon.pid, 'SIGCONT')
      }
    }
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('SIGKILL of the stage in use: the stream closes, the span is re-routed and replayed', async () => {
    const x = await serve('x', '0-4', { BLYD_TEST_STEP_DELAY_MS: String(STEP_DELAY_MS) })
    await waitServing(x, 0, 4)
    await waitWarm(x)
    const gen = await generateWithFault(x, async () => { await x.daemon.kill('SIGKILL') })
    checkRecovered(gen, x, 'closed')
    await retire(x)
  })

  it('SIGSTOP of the stage in use: the step deadline passes, the span is re-routed and replayed', async () => {
    const y = await serve('y', '0-4', { BLYD_TEST_STEP_DELAY_MS: String(STEP_DELAY_MS) })
    await waitServing(y, 0, 4)
    await waitWarm(y)
    try {
      const gen = await generateWithFault(y, () => { process.kill(y.daemon.pid, 'SIGSTOP') })
      checkRecovered(gen, y, 'timeout')
    } finally {
      await retire(y)
    }
  })

  it('a stage that answers NaN frames: the RESULT is refused, the span is re-routed and replayed', async () => {
    // fault injection: from its 4th step on, z sends RESULTs of the right shape full of NaN
    const z = await serve('z', '0-4', { BLYD_TEST_CORRUPT_RESULTS: '4' })
    await waitServing(z, 0, 4)
    await waitWarm(z)
    const gen = await generateWithFault(z)
    checkRecovered(gen, z, 'malformed')
    expect(gen.recoveries[0].error).to.match(/non-finite/)
  })
})
