/**
 * Load: 50 concurrent greedy generations (interactive, batch and background
 * mixed) against a 3-stage mesh with two holders per span, in one process
 * over real libp2p on 127.0.0.1. Every route starts on the first holders,
 * which fill up and answer BUSY; the clients re-route to the second holders.
 * Each stage step is slowed a little (fault injection's stepDelayMs stands
 * in for a bigger model) so the stage queues really form.
 */
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { PipelineError, PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { SESSION_PRIORITY_NAMES, priorityOf } from '../../src/pipeline/priority.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { greedyReferences, loadPrompts, median } from '../model/load-prompts.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { TokenModel } from '../../src/model/generation/token-model.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { PipelineSession } from '../../src/pipeline/pipeline-client.ts'
import type { SessionPriorityName } from '../../src/pipeline/priority.ts'
import type { RouteHop } from '../../src/pipeline/route.ts'
import type { Fixture } from '../model/fixtures.ts'

const GENERATIONS = 50
const NEW_TOKENS = 6
/** positions each session asks every stage for */
const MAX_LENGTH = 32
/** sessions (and cache positions for as many) each holder takes: two holders per span hold all 50 */
const MAX_SESSIONS = 25
const MAX_CACHE_POSITIONS = MAX_SESSIONS * MAX_LENGTH
const SPANS: Array<[number, number]> = [[0, 2], [2, 3], [3, 4]]

function hopOf (s: TestStage): RouteHop {
  return { peerId: s.node.peerId, multiaddrs: s.node.getMultiaddrs(), start: s.layers.start, end: s.layers.end }
}

describe('pipeline under load: 50 concurrent generations, 3 stages, 2 holders per span', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let full: LayerRange
  let local: LayerRange
  let client: BlyLibp2p
  /** first and second holder of each span */
  const first: TestStage[] = []
  const second: TestStage[] = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    full = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 4, embedding: true, head: true })
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    client = await startNode()
    const init = { maxSessions: MAX_SESSIONS, maxCachePositions: MAX_CACHE_POSITIONS, faults: { stepDelayMs: 5 } }
    for (const [start, end] of SPANS) {
      first.push(await startStage(fixture, start, end, init))
      second.push(await startStage(fixture, start, end, init))
    }
  })

  after(async () => {
    await client?.stop()
    await Promise.allSettled([...first, ...second].map(async s => s.stop()))
    full?.dispose()
    local?.dispose()
  })

  it('none fails, outputs equal the reference, BUSY re-routes, interactive steps are faster, memory stays bounded', async () => {
    // ten prompts, each with its greedy continuation through the whole model in this process
    const prompts = loadPrompts(fixture)
    const reference = await greedyReferences(full, prompts, NEW_TOKENS)
    expect(reference[0]).to.deep.equal(fixture.expected.greedy.tokens.slice(0, NEW_TOKENS))

    const all = [...first, ...second]
    const peak = { reserved: 0, sessions: 0, queued: 0 }
    const sample = (): void => {
      for (const s of all) {
        const st = s.server.stats
        peak.reserved = Math.max(peak.reserved, st.reservedPositions)
        peak.sessions = Math.max(peak.sessions, st.sessions)
        peak.queued = Math.max(peak.queued, st.queuedSteps)
        expect(st.reservedPositions).to.be.at.most(MAX_CACHE_POSITIONS)
        expect(st.sessions).to.be.at.most(MAX_SESSIONS)
      }
    }
    const sampler = setInterval(sample, 2)

    const reroute = async (lost: { start: number, end: number }, banned: ReadonlySet<string>): Promise<RouteHop[]> => {
      const holder = all.find(s => s.layers.start === lost.start && s.layers.end === lost.end && !banned.has(s.node.peerId.toString()))
      if (holder == null) {
        throw new PipelineError(PipelineErrorCode.BAD_ROUTE, `no holder of [${lost.start}, ${lost.end}) left`)
      }
      return [hopOf(holder)]
    }
    const runs = Array.from({ length: GENERATIONS }, (_, i) => ({
      priority: SESSION_PRIORITY_NAMES[i % SESSION_PRIORITY_NAMES.length] as SessionPriorityName,
      prompt: i % prompts.length,
      /** ms of each step (the first opens the stages and may re-route) */
      steps: [] as number[],
      recoveries: 0
    }))
    let results: Array<PromiseSettledResult<number[]>>
    try {
      results = await Promise.allSettled(runs.map(async (run) => {
        const pipeline = createPipelineClient({ libp2p: client, modelId: MODEL_ID, local, route: first.map(hopOf), reroute, priority: priorityOf(run.priority), maxLength: MAX_LENGTH })
        const model: TokenModel<PipelineSession> = {
          createSession: () => pipeline.createSession(),
          nextLogits: async (session, ids) => {
            const t0 = performance.now()
            const out = await session.nextLogits(ids)
            run.steps.push(performance.now() - t0)
            run.recoveries = session.recoveries.length
            return out
          }
        }
        const it = generate(model, prompts[run.prompt], { maxNewTokens: NEW_TOKENS })
        let next = await it.next()
        while (next.done !== true) {
          next = await it.next()
        }
        return next.value.tokens
      }))
    } finally {
      clearInterval(sampler)
    }
    sample()

    // none fails and every output is the reference greedy continuation of its prompt
    const failed = results.flatMap((r, i) => r.status === 'rejected' ? [`#${i}: ${String(r.reason?.message ?? r.reason)}`] : [])
    expect(failed).to.deep.equal([])
    results.forEach((r, i) => {
      expect((r as PromiseFulfilledResult<number[]>).value, `generation #${i}`).to.deep.equal(reference[runs[i].prompt])
    })

    // the first holders filled up, answered BUSY, and the clients went to the second holders
    const busy = first.reduce((n, s) => n + s.server.stats.busy, 0)
    expect(busy).to.be.greaterThan(0)
    expect(runs.some(r => r.recoveries > 0)).to.equal(true)
    expect(second.every(s => s.server.stats.opened > 0)).to.equal(true)
    // the sessions ran over the stages' direct channels (the default transport)
    expect(all.every(s => s.server.stats.direct > 0)).to.equal(true)
    // the bounds were reached, never passed (checked at every sample above)
    expect(peak.sessions).to.equal(MAX_SESSIONS)
    expect(peak.reserved).to.equal(MAX_CACHE_POSITIONS)
    // queues formed (what the node record announces as queueLength)
    expect(peak.queued).to.be.greaterThan(1)

    // under the same contention, interactive sessions keep their latency: a smaller mean step
    // time (generation time / steps, the first step with its open and re-route included) and
    // an earlier first token than batch sessions. (Decode steps alone would not show it: the
    // lower priorities take most of theirs after the interactive sessions are done, uncontended.)
    const meanStep = (p: SessionPriorityName): number => median(runs.filter(r => r.priority === p).map(r => r.steps.reduce((a, b) => a + b, 0) / r.steps.length))
    const firstStep = (p: SessionPriorityName): number => median(runs.filter(r => r.priority === p).map(r => r.steps[0]))
    const [interactive, batch, background] = (['interactive', 'batch', 'background'] as const).map(meanStep)
    const why = `median mean step ms: interactive ${interactive.toFixed(1)}, batch ${batch.toFixed(1)}, background ${background.toFixed(1)}`
    expect(interactive, why).to.be.below(batch)
    expect(interactive, why).to.be.below(background)
    expect(firstStep('interactive'), `median first step ms: interactive ${firstStep('interactive').toFixed(1)}, batch ${firstStep('batch').toFixed(1)}`).to.be.below(firstStep('batch'))

    // every session closed and its cache freed
    await waitFor('stage sessions to close', () => all.every(s => s.server.stats.sessions === 0 && s.server.stats.reservedPositions === 0))
  })
})
