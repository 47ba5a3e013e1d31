/**
 * Pipeline client failover with in-process stage servers on 127.0.0.1 (the
 * daemon-level kill / stop / garbage cases are in test/mesh/failover.spec.ts):
 * a stage that cannot be opened, one that sends NaN RESULTs, one that shuts
 * down mid-session, one replaced by part of a larger span, replacements that
 * fail too, and no holder left.
 */
import { expect } from 'aegir/chai'
import { planReplacement } from '../../src/mesh/mesh-route.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { PipelineError, PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { relativeDiff } from '../../src/pipeline/failover.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { FailureReason, checkStageResult, failureReason } from '../../src/pipeline/stage-failure.ts'
import { concatInputs } from '../../src/pipeline/stage-history.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { TokenModel } from '../../src/model/generation/token-model.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageFaults } from '../../src/pipeline/fault-injection.ts'
import type { PipelineClient, PipelineClientInit, PipelineSession } from '../../src/pipeline/pipeline-client.ts'
import type { RouteHop } from '../../src/pipeline/route.ts'
import type { StageServerInit } from '../../src/pipeline/stage-server.ts'
import type { Fixture } from '../model/fixtures.ts'

function hopOf (s: TestStage): RouteHop {
  return { peerId: s.node.peerId, multiaddrs: s.node.getMultiaddrs(), start: s.layers.start, end: s.layers.end }
}

/** A chain of pool stages covering exactly [start, end) with no banned peer (depth first, pool order). */
function chain (pool: TestStage[], start: number, end: number, banned: ReadonlySet<string>): TestStage[] | undefined {
  if (start === end) {
    return []
  }
  for (const s of pool) {
    if (s.layers.start === start && s.layers.end <= end && !banned.has(s.node.peerId.toString())) {
      const rest = chain(pool, s.layers.end, end, banned)
      if (rest != null) {
        return [s, ...rest]
      }
    }
  }
  return undefined
}

async function greedy (client: PipelineClient, prompt: number[], maxNewTokens: number): Promise<{ tokens: number[], session: PipelineSession }> {
  let session: PipelineSession | undefined
  const model: TokenModel<PipelineSession> = {
    createSession: () => {
      session = client.createSession()
      return session
    },
    nextLogits: async (s, ids) => s.nextLogits(ids)
  }
  const it = generate(model, prompt, { maxNewTokens })
  let next
  while ((next = await it.next()).done !== true) {
    // drain
  }
  return { tokens: next.value.tokens, session: session as PipelineSession }
}

async function greedyOn (session: PipelineSession, prompt: number[], maxNewTokens: number): Promise<number[]> {
  const model: TokenModel<PipelineSession> = { createSession: () => session, nextLogits: async (s, ids) => s.nextLogits(ids) }
  const it = generate(model, prompt, { maxNewTokens })
  let next
  while ((next = await it.next()).done !== true) {
    // drain
  }
  return next.value.tokens
}

/** Greedy generation that calls `beforeStep(i)` before its i-th forward (0 = the prefill). */
async function greedyHooked (client: PipelineClient, prompt: number[], maxNewTokens: number, beforeStep: (i: number) => void): Promise<{ tokens: number[], session: PipelineSession }> {
  let session: PipelineSession | undefined
  let step = 0
  const model: TokenModel<PipelineSession> = {
    createSession: () => {
      session = client.createSession()
      return session
    },
    nextLogits: async (s, ids) => {
      beforeStep(step++)
      return s.nextLogits(ids)
    }
  }
  const it = generate(model, prompt, { maxNewTokens })
  let next
  while ((next = await it.next()).done !== true) {
    // drain
  }
  return { tokens: next.value.tokens, session: session as PipelineSession }
}

/** the step deadline's ceiling in the adaptive-deadline cases: far above what any healthy step takes here */
const CEILING_MS = 20_000
/** their floor: below a slow stage's step, so only the stage's own measured speed keeps it */
const FLOOR_MS = 100
/** their stages' step time (fault injection's delay, counted as compute) */
const STEP_MS = 100

describe('pipeline failover: replace a failed stage and replay its history', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let client: BlyLibp2p
  const started: TestStage[] = []

  async function stage (start: number, end: number, faults?: StageFaults, init: Partial<Omit<StageServerInit, 'layers'>> = {}): Promise<TestStage> {
    const s = await startStage(fixture, start, end, { ...init, ...(faults != null ? { faults } : {}) })
    started.push(s)
    return s
  }

  function pipeline (route: TestStage[], pool: TestStage[], init: Partial<PipelineClientInit> = {}): PipelineClient {
    return createPipelineClient({
      libp2p: client,
      modelId: MODEL_ID,
      local,
      route: route.map(hopOf),
      stepTimeoutMs: 2000,
      reroute: async (lost, banned) => {
        const found = chain(pool, lost.start, lost.end, banned)
        if (found == null) {
          throw new Error(`no holder of [${lost.start}, ${lost.end}) left`)
        }
        return found.map(hopOf)
      },
      ...init
    })
  }

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    client = await startNode()
  })

  after(async () => {
    await client?.stop()
    await Promise.allSettled(started.map(async s => s.stop()))
    local?.dispose()
  })

  it('a stage sending NaN RESULTs mid-generation is replaced by two spans; tokens equal the reference', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const bad = await stage(0, 4, { corruptFromStep: 5 })
    const a = await stage(0, 2)
    const b = await stage(2, 4)
    const { tokens: out, session } = await greedy(pipeline([bad], [bad, a, b]), prompt, tokens.length)
    expect(out).to.deep.equal(tokens)
    expect(session.recoveries).to.have.lengthOf(1)
    const [r] = session.recoveries
    expect(r).to.include({ peerId: bad.node.peerId.toString(), reason: FailureReason.MALFORMED, start: 0, end: 4 })
    expect(r.error).to.match(/non-finite/)
    expect(r.replacement).to.deep.equal([{ peerId: a.node.peerId.toString(), start: 0, end: 2 }, { peerId: b.node.peerId.toString(), start: 2, end: 4 }])
    // the prefill plus the three tokens the bad stage got right, plus the step it failed
    expect(r.positions).to.equal(prompt.length + 4)
    expect(r.replayDiff).to.be.at.most(1e-2)
    expect(session.route.map(h => [h.start, h.end])).to.deep.equal([[0, 2], [2, 4]])
    // the second replacement's history is the first one's replayed output, then one input per step
    const second = session.inputs(1)
    expect(second[0]).to.include({ startPos: 0, rows: prompt.length + 4 })
    expect(second.reduce((n, x) => n + x.rows, 0)).to.equal(session.length)
    expect(session.banned.has(bad.node.peerId.toString())).to.equal(true)
  })

  it('a lost [0, 2) is replaced by a holder of [0, 3) serving only [0, 2) (mesh routing, partial hops); tokens equal the reference', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const bad = await stage(0, 2, { corruptFromStep: 5 })
    const wide = await stage(0, 3)
    const tail = await stage(2, 4)
    // the live spans as the mesh sees them: no holder of exactly [0, 2) is left once bad is banned
    const spans = [bad, wide, tail].map(s => ({ peerId: s.node.peerId, start: s.layers.start, end: s.layers.end, throughputMilli: 10_000, freeSessions: 4, test: s }))
    const client = pipeline([bad, tail], [], {
      reroute: async (lost, banned) => planReplacement(spans, lost, banned).map(h => ({ peerId: h.peerId, multiaddrs: h.test.node.getMultiaddrs(), start: h.start, end: h.end }))
    })
    const { tokens: out, session } = await greedy(client, prompt, tokens.length)
    expect(out).to.deep.equal(tokens)
    expect(session.recoveries).to.have.lengthOf(1)
    const [r] = session.recoveries
    expect(r).to.include({ peerId: bad.node.peerId.toString(), reason: FailureReason.MALFORMED, start: 0, end: 2 })
    expect(r.replacement).to.deep.equal([{ peerId: wide.node.peerId.toString(), start: 0, end: 2 }])
    expect(r.replayDiff).to.be.at.most(1e-2)
    expect(session.route.map(h => [h.peerId.toString(), h.start, h.end])).to.deep.equal([[wide.node.peerId.toString(), 0, 2], [tail.node.peerId.toString(), 2, 4]])
    // the [0, 3) stage ran its first two layers for this session; the tail was never replaced
    expect(wide.server.stats).to.include({ opened: 1, rejected: 0 })
    expect(wide.server.stats.positions).to.equal(session.length)
    expect(tail.server.stats.opened).to.equal(1)
  })

  it('a stage that shuts down mid-session is replaced; a failing replacement is banned and the next one used; truncate still works', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const first = await stage(0, 2)
    const broken = await stage(0, 2, { corruptFromStep: 1 })
    const good = await stage(0, 2)
    const tail = await stage(2, 4)
    const session = pipeline([first, tail], [broken, good, tail]).createSession()
    const reference = await greedy(pipeline([good, tail], []), prompt, tokens.length)
    expect(reference.tokens).to.deep.equal(tokens)
    await session.forward(prompt)
    await session.forward(tokens.slice(0, 3))
    await first.server.stop()
    const logits = await session.forward(tokens.slice(3, 4))
    expect(logits.rows).to.equal(1)
    expect(session.recoveries).to.have.lengthOf(1)
    const [r] = session.recoveries
    expect(r.peerId).to.equal(first.node.peerId.toString())
    expect(r.alsoBanned).to.deep.equal([broken.node.peerId.toString()])
    expect(r.replacement).to.deep.equal([{ peerId: good.node.peerId.toString(), start: 0, end: 2 }])
    // truncate reaches the replacement: a rewound step gives the same logits again
    const again = await session.forward(tokens.slice(4, 5))
    await session.truncate(session.length - 1)
    const redo = await session.forward(tokens.slice(4, 5))
    expect(Array.from(redo.logits)).to.deep.equal(Array.from(again.logits))
    await session.close()
  })

  it('a stage that cannot be opened is replaced before the first step', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const gone = await stage(0, 2)
    const other = await stage(0, 2)
    const tail = await stage(2, 4)
    const route = [gone, tail]
    await gone.stop()
    const { tokens: out, session } = await greedy(pipeline(route, [gone, other, tail], { openTimeoutMs: 2000 }), prompt, 4)
    expect(out).to.deep.equal(tokens.slice(0, 4))
    expect(session.recoveries).to.have.lengthOf(1)
    expect(session.recoveries[0]).to.include({ peerId: gone.node.peerId.toString(), positions: prompt.length })
  })

  it('no holder left: the step fails with ERR_PIPELINE_RECOVERY_FAILED naming the layers', async () => {
    const bad = await stage(0, 4, { corruptFromStep: 1 })
    const session = pipeline([bad], [bad]).createSession()
    const err = await session.forward([1, 2, 3]).then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(PipelineError)
    expect(err).to.have.property('code', PipelineErrorCode.RECOVERY_FAILED)
    expect(err?.message).to.include('[0, 4)').and.include('no holder of [0, 4) left')
    await session.close()
  })

  it('every holder busy: the first step gives its stages back, waits for room and goes on; tokens equal the reference', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    // the head takes two sessions, the tail one: the second session gets the head, is BUSY at
    // the tail, and must give the head back while it waits (holding it could deadlock)
    const head = await stage(0, 2, undefined, { maxSessions: 2 })
    const tail = await stage(2, 4, undefined, { maxSessions: 1 })
    const client1 = pipeline([head, tail], [head, tail])
    const first = client1.createSession()
    await first.forward(prompt)
    const second = pipeline([head, tail], [head, tail], { busyBackoffMs: 5 }).createSession()
    const waiting = greedyOn(second, prompt, 4)
    await waitFor('the second session to wait twice', () => second.busyWaits >= 2)
    expect(tail.server.stats.busy).to.be.at.least(2)
    // each try opened the head and closed it again
    expect(head.server.stats.opened).to.be.at.least(3)
    expect(head.server.stats.closed).to.be.at.least(2)
    await first.close()
    const out = await waiting
    expect(out).to.deep.equal(tokens.slice(0, 4))
    expect(second.recoveries.every(r => r.reason === FailureReason.BUSY)).to.equal(true)
    await second.close()
  })

  it('every holder busy for longer than busyWaitMs: ERR_PIPELINE_RECOVERY_FAILED saying it stayed busy', async () => {
    const only = await stage(0, 4, undefined, { maxSessions: 1 })
    const holder = pipeline([only], [only]).createSession()
    await holder.forward([1, 2, 3])
    const session = pipeline([only], [only], { busyWaitMs: 200, busyBackoffMs: 5 }).createSession()
    const err = await session.forward([1, 2, 3]).then(() => undefined, (e: Error) => e)
    expect(err).to.have.property('code', PipelineErrorCode.RECOVERY_FAILED)
    expect(err?.message).to.match(/stayed busy for \d+ ms/)
    expect(session.busyWaits).to.be.at.least(1)
    await Promise.all([holder.close(), session.close()])
  })

  it('a stage 3x slower than the rest, and one that becomes 3x slower mid-generation, are not replaced: each step\'s deadline follows the stage\'s own speed, not the floor', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const becomesSlow: StageFaults = { stepDelayMs: STEP_MS }
    const head = await stage(0, 2, becomesSlow)
    const slow = await stage(2, 4, { stepDelayMs: 3 * STEP_MS })
    const spareHead = await stage(0, 2, { stepDelayMs: STEP_MS })
    const spareTail = await stage(2, 4, { stepDelayMs: STEP_MS })
    const client = pipeline([head, slow], [head, slow, spareHead, spareTail], { stepTimeoutMs: CEILING_MS, deadlineFloorMs: FLOOR_MS })
    const n = 8
    const { tokens: out, session } = await greedyHooked(client, prompt, n, (i) => {
      if (i === 3) {
        becomesSlow.slowFactor = 3
      }
    })
    expect(out).to.deep.equal(tokens.slice(0, n))
    expect(session.recoveries).to.deep.equal([])
    expect(session.route.map(h => h.peerId.toString())).to.deep.equal([head.node.peerId, slow.node.peerId].map(String))
    // both really took longer than the floor per step (the injected time counts as compute)
    expect(slow.server.stats.computeMs / slow.server.stats.steps).to.be.above(FLOOR_MS)
    expect(head.server.stats.decodeMs / head.server.stats.decodeSteps).to.be.above(FLOOR_MS)
    expect(spareHead.server.stats.opened + spareTail.server.stats.opened).to.equal(0)
  })

  it('a stage that stalls mid-generation is replaced once its adaptive deadline passes, far below the ceiling; tokens equal the reference', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const stalls: StageFaults = { stepDelayMs: STEP_MS }
    const head = await stage(0, 2, { stepDelayMs: STEP_MS })
    const tail = await stage(2, 4, stalls)
    const spare = await stage(2, 4, { stepDelayMs: STEP_MS })
    const client = pipeline([head, tail], [head, tail, spare], { stepTimeoutMs: CEILING_MS, deadlineFloorMs: FLOOR_MS })
    const n = 8
    const { tokens: out, session } = await greedyHooked(client, prompt, n, (i) => {
      if (i === 4) {
        // long enough to miss any deadline the stage's speed gives, short enough for stop() to wait out
        stalls.stepDelayMs = 4000
      }
    })
    expect(out).to.deep.equal(tokens.slice(0, n))
    expect(session.recoveries).to.have.lengthOf(1)
    const [r] = session.recoveries
    expect(r).to.include({ peerId: tail.node.peerId.toString(), reason: FailureReason.TIMEOUT, start: 2, end: 4 })
    expect(r.replacement).to.deep.equal([{ peerId: spare.node.peerId.toString(), start: 2, end: 4 }])
    // the deadline it missed came from its speed: at least the floor, a small part of the ceiling
    expect(r.deadlineMs).to.be.a('number').and.at.least(FLOOR_MS).and.below(CEILING_MS / 4)
    expect(r.error).to.include(`within ${r.deadlineMs} ms`)
  })

  it('without reroute a malformed RESULT fails the step as before', async () => {
    const bad = await stage(0, 4, { corruptFromStep: 1 })
    const session = pipeline([bad], [], { reroute: undefined }).createSession()
    const err = await session.forward([1, 2, 3]).then(() => undefined, (e: Error) => e)
    expect(err).to.have.property('code', PipelineErrorCode.BAD_FRAME)
    expect(session.recoveries).to.have.lengthOf(0)
    await session.close()
  })

  it('helpers: failure reasons, RESULT checks, history concatenation, replay comparison', () => {
    expect(failureReason(new PipelineError(PipelineErrorCode.TIMEOUT, 'x'))).to.equal(FailureReason.TIMEOUT)
    expect(failureReason(new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'x'))).to.equal(FailureReason.CLOSED)
    expect(failureReason(new PipelineError(PipelineErrorCode.BAD_FRAME, 'x'))).to.equal(FailureReason.MALFORMED)
    expect(failureReason(new PipelineError(PipelineErrorCode.BUSY, 'x'))).to.equal(FailureReason.BUSY)
    expect(failureReason(new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'x'))).to.equal(undefined)
    expect(failureReason(new Error('x'), AbortSignal.abort())).to.equal(undefined)
    const ok = { rows: 2, cols: 2, startPos: 3, data: new Float32Array([1, 2, 3, 4]) }
    expect(() => { checkStageResult(ok, 2, 2, 3, 0) }).to.not.throw()
    expect(() => { checkStageResult({ ...ok, startPos: 2 }, 2, 2, 3, 0) }).to.throw(/expected \[2, 2\] at 3/)
    expect(() => { checkStageResult({ ...ok, data: new Float32Array([1, Infinity, 3, 4]) }, 2, 2, 3, 0) }).to.throw(/non-finite/)
    expect(() => { checkStageResult({ ...ok, data: new Float32Array([1, 2, NaN, 4]) }, 2, 2, 3, 0) }).to.throw(/row 4/)
    const joined = concatInputs([{ startPos: 0, rows: 1, data: new Float32Array([1, 2]) }, { startPos: 1, rows: 2, data: new Float32Array([3, 4, 5, 6]) }], 2)
    expect(joined.rows).to.equal(3)
    expect(Array.from(joined.data)).to.deep.equal([1, 2, 3, 4, 5, 6])
    expect(() => concatInputs([{ startPos: 1, rows: 1, data: new Float32Array(2) }], 2)).to.throw(/gap/)
    expect(relativeDiff(new Float32Array([1, 2]), new Float32Array([1, 2]), 2)).to.equal(0)
    expect(relativeDiff(new Float32Array([0, 110]), new Float32Array([0, 100]), 2)).to.be.closeTo(0.1, 1e-9)
    expect(relativeDiff(new Float32Array([NaN, 2]), new Float32Array([1, 2]), 2)).to.equal(Infinity)
  })
})
