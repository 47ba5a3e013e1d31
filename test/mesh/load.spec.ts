/**
 * Load with real `blyd` daemons on 127.0.0.1: 50 concurrent greedy
 * generations (interactive, batch and background mixed) sent over IPC to one
 * client daemon, against a 3-stage mesh (three more daemons serving layers
 * [0, 2), [2, 3) and [3, 4)). Each stage takes at most MAX_SESSIONS sessions
 * and MAX_CACHE_POSITIONS KV-cache positions, far fewer than 50 generations
 * need, and is slowed a little per step (fault injection's step delay stands
 * in for a bigger model) so its queue really forms. Every generation must
 * finish with the reference tokens: full stages answer BUSY, and a client
 * whose holders are all busy gives its stages back and waits for room, the
 * most urgent sessions first.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { SESSION_PRIORITY_NAMES } from '../../src/pipeline/priority.ts'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { fixtureDir, loadFixture, sourceOf } from '../model/fixtures.ts'
import { greedyReferences, loadPrompts, median } from '../model/load-prompts.ts'
import { startMeshNode, waitFor } from './helpers.ts'
import type { MeshNode } from './helpers.ts'
import type { Fixture } from '../model/fixtures.ts'

const GENERATIONS = 50
const NEW_TOKENS = 6
const SPANS: Array<[number, number]> = [[0, 2], [2, 3], [3, 4]]
/** each stage's bounds: a session asks for prompt + NEW_TOKENS (<= 11) positions, so the cache bound binds first */
const MAX_SESSIONS = 12
const MAX_CACHE_POSITIONS = 80
const STEP_DELAY_MS = 15

type Node = MeshNode

describe('mesh under load: 50 concurrent generations through a 3-stage daemon mesh', function () {
  this.timeout(240_000)
  let root: string
  const nodes: Node[] = []
  const stages: Node[] = []
  let a: Node
  let model: string
  let fixture: Fixture

  async function start (name: string, args: string[] = [], env: Record<string, string> = {}): Promise<Node> {
    const node = await startMeshNode(root, name, args, env)
    nodes.push(node)
    return node
  }

  async function serving (n: Node): Promise<any> {
    return (await ipcRequest(n.daemon.socketPath, 'status')).serving
  }

  before(async () => {
    root = await makeTempDir()
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    a = await start('a')
    model = (await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', a.dir])).modelId
    const args = ['--bootstrap', a.addr, '--model', model, '--max-sessions', String(MAX_SESSIONS), '--max-cache-positions', String(MAX_CACHE_POSITIONS)]
    const env = { BLYD_TEST_STEP_DELAY_MS: String(STEP_DELAY_MS) }
    stages.push(...await Promise.all(SPANS.map(async ([s, e]) => start(`stage-${s}-${e}`, [...args, '--layers', `${s}-${e}`], env))))
    const announced = (spans: any[], n: Node): boolean => spans.some(s => s.peerId === n.peerId && s.source === 'direct')
    await waitFor('A to see all three spans', async () => {
      const spans: any[] = (await ipcRequest(a.daemon.socketPath, 'peers', { model })).spans
      return stages.every(n => announced(spans, n))
    }, 90_000)
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('none fails, outputs equal the reference, full stages answer BUSY, interactive sessions keep their latency, cache bounds hold', async () => {
    // ten prompts, each with its greedy continuation through the whole model in this process
    const prompts = loadPrompts(fixture)
    const full = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 4, embedding: true, head: true })
    const reference = await greedyReferences(full, prompts, NEW_TOKENS).finally(() => { full.dispose() })
    expect(reference[0]).to.deep.equal(fixture.expected.greedy.tokens.slice(0, NEW_TOKENS))

    // watch the stages' bounds while the load runs
    const seen = { sessions: 0, reserved: 0, queued: 0 }
    const sampling = { on: true }
    const sampler = (async () => {
      while (sampling.on) {
        for (const st of await Promise.all(stages.map(serving))) {
          seen.sessions = Math.max(seen.sessions, st.sessions)
          seen.reserved = Math.max(seen.reserved, st.reservedPositions)
          seen.queued = Math.max(seen.queued, st.queuedSteps)
        }
        await sleep(25)
      }
    })()

    const runs = Array.from({ length: GENERATIONS }, (_, i) => ({
      priority: SESSION_PRIORITY_NAMES[i % SESSION_PRIORITY_NAMES.length],
      prompt: i % prompts.length,
      ms: 0
    }))
    let results: Array<PromiseSettledResult<any>>
    try {
      results = await Promise.allSettled(runs.map(async (run) => {
        const t0 = performance.now()
        const out = await ipcRequest(a.daemon.socketPath, 'generate', { model, promptIds: prompts[run.prompt], maxNewTokens: NEW_TOKENS, temperature: 0, priority: run.priority })
        run.ms = performance.now() - t0
        return out
      }))
    } finally {
      sampling.on = false
      await sampler
    }

    // none fails and every output is the reference greedy continuation of its prompt
    const failed = results.flatMap((r, i) => r.status === 'rejected' ? [`#${i}: ${String(r.reason?.message ?? r.reason)}`] : [])
    expect(failed).to.deep.equal([])
    const out = results.map(r => (r as PromiseFulfilledResult<any>).value)
    out.forEach((r, i) => {
      expect(r.tokens, `generation #${i}`).to.deep.equal(reference[runs[i].prompt])
      expect(r.via).to.equal('mesh')
      expect(r.route.map((h: any) => h.peerId)).to.deep.equal(stages.map(n => n.peerId))
    })

    // the stages filled up and answered BUSY; the clients waited for room instead of failing
    const after = await Promise.all(stages.map(serving))
    expect(after.reduce((n, st) => n + st.busy, 0)).to.be.greaterThan(0)
    expect(out.some(r => r.busyWaits > 0)).to.equal(true)
    // the bounds were reached and never passed (the stage's own peak, and what the sampler saw)
    for (const st of after) {
      expect(st.maxSessions).to.equal(MAX_SESSIONS)
      expect(st.maxCachePositions).to.equal(MAX_CACHE_POSITIONS)
      expect(st.peakSessions).to.be.at.most(MAX_SESSIONS)
      expect(st.peakReservedPositions).to.be.at.most(MAX_CACHE_POSITIONS)
      // each session reserved only what it can reach, not the stage's 4096-position default
      expect(st.peakReservedPositions).to.be.greaterThan(MAX_CACHE_POSITIONS - 11)
      expect(st.opened).to.be.at.least(GENERATIONS)
    }
    expect(seen.sessions).to.be.at.most(MAX_SESSIONS)
    expect(seen.reserved).to.be.at.most(MAX_CACHE_POSITIONS)
    expect(seen.queued).to.be.greaterThan(0)

    // interactive sessions keep their latency: an earlier first token and a shorter generation than batch and background
    const by = (p: string, f: (i: number) => number): number => median(runs.flatMap((r, i) => r.priority === p ? [f(i)] : []))
    const first = (p: string): number => by(p, i => out[i].firstTokenMs)
    const total = (p: string): number => by(p, i => runs[i].ms)
    const why = `median first token ms: interactive ${first('interactive').toFixed(0)}, batch ${first('batch').toFixed(0)}, background ${first('background').toFixed(0)}; ` +
      `median generation ms: interactive ${total('interactive').toFixed(0)}, batch ${total('batch').toFixed(0)}, background ${total('background').toFixed(0)}`
    process.stdout.write(`      ${why}\n`)
    expect(first('interactive'), why).to.be.below(first('batch'))
    expect(first('interactive'), why).to.be.below(first('background'))
    expect(total('interactive'), why).to.be.below(total('background'))

    // every session closed and its cache freed
    await waitFor('stage sessions to close', async () => (await Promise.all(stages.map(serving))).every(st => st.sessions === 0 && st.reservedPositions === 0), 30_000)
  })
})
