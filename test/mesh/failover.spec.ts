/**
 * Failover with replay, with real `blyd` daemons on 127.0.0.1. Node A
 * imports the 4-layer fixture and generates; four more daemons serve it with
 * two holders per span: B1, B2 hold layers 0-2 and C1, C2 layers 2-4. Every
 * holder is slowed by the test-only step delay so a fault lands in the middle
 * of a generation. Whichever holder of the span under test the route happens
 * to use is, once it has computed some steps, SIGKILLed (its stream closes),
 * SIGSTOPped (A's step deadline passes: adaptive, from what the stage took
 * so far, far below the fixed ceiling) or told by SIGUSR2 to answer NaN
 * frames from then on. The generation must finish on the other holder of that
 * span with the reference greedy tokens and name the failover. After each
 * case the faulty holder is retired and a fresh one takes its place, so every
 * case starts with two holders per span.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { startMeshNode, waitFor, waitForNodes } from './helpers.ts'
import type { MeshNode } from './helpers.ts'
import type { Expected } from '../model/fixtures.ts'

const RECORD_TTL_MS = 2000
/**
 * the generating node's step timeout: the ceiling of the step deadline. The
 * deadline itself follows each stage's measured speed (at least 1 s), so a
 * SIGSTOPped stage is replaced long before this would have passed
 */
const STEP_TIMEOUT_MS = 30_000
/** fault injection: each RESULT of every holder waits this long, so the fault lands mid-generation */
const STEP_DELAY_MS = 150
/** act once the holder in use computed this many steps of the generation (the prefill plus some tokens) */
const ACT_AFTER_STEPS = 6

type Node = MeshNode

interface Span { start: number, end: number }

describe('mesh failover: 5 daemons, 2 holders per span; a stage dies, stalls or answers garbage mid-generation', function () {
  this.timeout(180_000)
  let root: string
  const nodes: Node[] = []
  /** the live holders of each span, by `${start}-${end}` */
  const holders = new Map<string, Node[]>()
  let model: string
  let expected: Expected
  let a: Node
  let serial = 0

  async function start (name: string, args: string[] = [], env: Record<string, string> = {}): Promise<Node> {
    const node = await startMeshNode(root, name, args, env)
    nodes.push(node)
    return node
  }

  const key = (span: Span): string => `${span.start}-${span.end}`

  /** Start one more holder of `span` (slowed, armed for SIGUSR2) and wait until A sees it serve. */
  async function addHolder (span: Span): Promise<Node> {
    const name = `${key(span)}#${++serial}`
    const n = await start(name, ['--bootstrap', a.addr, '--model', model, '--layers', key(span), '--record-ttl-ms', String(RECORD_TTL_MS)], {
      BLYD_TEST_STEP_DELAY_MS: String(STEP_DELAY_MS),
      BLYD_TEST_CORRUPT_ON_SIGNAL: 'SIGUSR2'
    })
    holders.set(key(span), [...(holders.get(key(span)) ?? []), n])
    return n
  }

  async function spans (): Promise<Array<{ peerId: string, start: number, end: number, source: string }>> {
    return (await ipcRequest(a.daemon.socketPath, 'peers', { model })).spans
  }

  async function waitServing (n: Node, span: Span): Promise<void> {
    await waitForNodes([n, a], `${n.name} to serve [${span.start}, ${span.end}) and A to see it`, async () => (await spans()).some(s => s.peerId === n.peerId && s.start === span.start && s.end === span.end && s.source === 'direct'), 60_000)
  }

  async function steps (n: Node): Promise<number> {
    return (await ipcRequest(n.daemon.socketPath, 'status')).serving?.steps ?? 0
  }

  /**
   * Greedy generation on A. Once the holder of `span` that the route uses
   * has computed ACT_AFTER_STEPS steps of it, `fault(victim)` runs.
   */
  async function generateWithFault (span: Span, fault: (victim: Node) => Promise<void> | void): Promise<{ gen: any, victim: Node }> {
    const candidates = holders.get(key(span)) ?? []
    const before = new Map(await Promise.all(candidates.map(async n => [n.peerId, await steps(n)] as const)))
    const { prompt, tokens } = expected.greedy
    const gen = runJson(['generate', '--model', model, '--prompt-ids', prompt.join(','), '--temperature', '0', '--max-new-tokens', String(tokens.length), '--json', '--data-dir', a.dir], { timeoutMs: 90_000 })
    let failed: Error | undefined
    gen.catch((err: Error) => { failed = err })
    const victim = await waitFor(`a holder of [${span.start}, ${span.end}) to compute ${ACT_AFTER_STEPS} steps`, async () => {
      if (failed != null) {
        throw failed
      }
      for (const n of candidates) {
        if ((await steps(n)) - (before.get(n.peerId) ?? 0) >= ACT_AFTER_STEPS) {
          return n
        }
      }
      return undefined
    }, 60_000, 20).catch(async (err) => {
      // the generation's own error says more than the timeout
      await gen
      throw err
    })
    await fault(victim)
    return { gen: await gen, victim }
  }

  /** Kill a holder, wait until A no longer lists its span, and start another holder in its place. */
  async function replace (victim: Node, span: Span): Promise<void> {
    if (victim.daemon.running) {
      process.kill(victim.daemon.pid, 'SIGCONT')
    }
    await victim.daemon.kill('SIGKILL')
    holders.set(key(span), (holders.get(key(span)) ?? []).filter(n => n !== victim))
    await waitFor(`${victim.name}'s record to lapse`, async () => !(await spans()).some(s => s.peerId === victim.peerId), RECORD_TTL_MS * 6)
    const fresh = await addHolder(span)
    await waitServing(fresh, span)
  }

  function checkRecovered (gen: any, victim: Node, span: Span, reason: string): void {
    expect(gen.tokens).to.deep.equal(expected.greedy.tokens)
    expect(gen.via).to.equal('mesh')
    expect(gen.recoveries).to.be.an('array').with.lengthOf(1)
    const [r] = gen.recoveries
    expect(r).to.include({ peerId: victim.peerId, reason, start: span.start, end: span.end })
    // the lost span is taken over by the other holder of the same span
    const other = (holders.get(key(span)) ?? []).filter(n => n !== victim)
    expect(other).to.have.lengthOf(1)
    expect(r.replacement).to.deep.equal([{ peerId: other[0].peerId, start: span.start, end: span.end }])
    expect(r.positions).to.be.at.least(expected.greedy.prompt.length + ACT_AFTER_STEPS - 1)
    expect(r.replayDiff).to.be.at.most(1e-2)
    const route = gen.route.map((h: any) => [h.peerId, h.start, h.end])
    expect(route).to.have.lengthOf(2)
    expect(route).to.deep.include([other[0].peerId, span.start, span.end])
    process.stdout.write(`      ${reason}: recovered in ${r.ms} ms (${r.positions} positions replayed, replay diff ${r.replayDiff})\n`)
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
    a = await start('a', ['--step-timeout-ms', String(STEP_TIMEOUT_MS)])
    model = (await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', a.dir])).modelId
    const layout: Span[] = [{ start: 0, end: 2 }, { start: 0, end: 2 }, { start: 2, end: 4 }, { start: 2, end: 4 }]
    const started = await Promise.all(layout.map(async span => ({ span, n: await addHolder(span) })))
    await Promise.all(started.map(async ({ span, n }) => { await waitServing(n, span) }))
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

  it('SIGKILL of the stage in use: the stream closes, the span goes to its other holder and is replayed', async () => {
    const span = { start: 0, end: 2 }
    const { gen, victim } = await generateWithFault(span, async (victim) => { await victim.daemon.kill('SIGKILL') })
    checkRecovered(gen, victim, span, 'closed')
    await replace(victim, span)
  })

  it('SIGSTOP of the stage in use: its adaptive step deadline passes, the span goes to its other holder and is replayed, well before the ceiling', async () => {
    const span = { start: 2, end: 4 }
    let victim: Node | undefined
    let stoppedAt = 0
    try {
      const run = await generateWithFault(span, (v) => {
        victim = v
        process.kill(v.daemon.pid, 'SIGSTOP')
        stoppedAt = performance.now()
      })
      // with the fixed deadline of old the rest of the generation alone would take the ceiling
      const afterStop = performance.now() - stoppedAt
      checkRecovered(run.gen, run.victim, span, 'timeout')
      const [r] = run.gen.recoveries
      expect(r.deadlineMs).to.be.a('number').and.below(STEP_TIMEOUT_MS / 4)
      expect(afterStop).to.be.below(STEP_TIMEOUT_MS)
    } finally {
      if (victim != null) {
        await replace(victim, span)
      }
    }
  })

  it('a stage that starts answering NaN frames: the RESULT is refused, the span goes to its other holder and is replayed', async () => {
    const span = { start: 0, end: 2 }
    const { gen, victim } = await generateWithFault(span, (v) => { process.kill(v.daemon.pid, 'SIGUSR2') })
    checkRecovered(gen, victim, span, 'malformed')
    expect(gen.recoveries[0].error).to.match(/non-finite/)
    await replace(victim, span)
  })
})
