import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { FrameStream } from '../../src/net/frame-stream.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { inferFrameCodec } from '../../src/pipeline/infer-frames.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { FailureReason, failureReason } from '../../src/pipeline/stage-failure.ts'
import { embedData } from '../../src/pipeline/stage-layers.ts'
import { INFER_PROTOCOL, InferErrorCode, OpenFlags, ResultKind, encodeInferFrameBytes, encodeVarint } from '../../src/protocols/infer.ts'
import { loadFixture, maxAbsDiff, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageClientInit } from '../../src/pipeline/stage-client.ts'
import type { InferFrame } from '../../src/protocols/infer.ts'
import type { Fixture } from '../model/fixtures.ts'

describe('pipeline/stage-server', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let client: BlyLibp2p
  let prompt: Float32Array
  const stages: TestStage[] = []
  const open: StageClient[] = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    prompt = await embedData(local, fixture.expected.greedy.prompt)
    client = await startNode()
  })

  afterEach(async () => {
    await Promise.allSettled(open.map(async c => c.close()))
    open.length = 0
    await Promise.allSettled(stages.map(async s => s.stop()))
    stages.length = 0
  })

  after(async () => {
    await client?.stop()
    local?.dispose()
  })

  async function stage (start: number, end: number, init: Parameters<typeof startStage>[3] = {}): Promise<TestStage> {
    const s = await startStage(fixture, start, end, init)
    stages.push(s)
    return s
  }

  async function session (s: TestStage, init: Partial<StageClientInit> = {}): Promise<StageClient> {
    const c = await StageClient.open({ libp2p: client, peer: s.node.getMultiaddrs(), modelId: MODEL_ID, start: s.layers.start, end: s.layers.end, sessionId: open.length + 1, ...init })
    open.push(c)
    return c
  }

  /** A raw stream to the stage: frames it receives are collected; bytes are sent as given. */
  async function raw (s: TestStage): Promise<{ frames: InferFrame[], closed: Promise<void>, send(bytes: Uint8Array): void }> {
    const stream = await client.dialProtocol(s.node.getMultiaddrs(), INFER_PROTOCOL)
    const frames: InferFrame[] = []
    const closed = Promise.withResolvers<void>()
    const reader = new FrameStream(stream, {
      codec: inferFrameCodec,
      maxFrameBytes: 1 << 20,
      onFrame: (f) => { frames.push(f) },
      onBadFrame: (err) => { closed.reject(err) },
      onClose: () => { closed.resolve() }
    })
    return { frames, closed: closed.promise, send: (bytes) => { reader.stream.send(bytes) } }
  }

  const openFrame = (s: TestStage, sessionId: number): Uint8Array => encodeInferFrameBytes({ type: 'open', version: 1, sessionId, modelId: MODEL_ID, start: s.layers.start, end: s.layers.end, maxLength: 0, priority: 0, flags: 0 })

  it('runs steps in order and returns hidden states equal to the local layers', async () => {
    const s = await stage(0, 2)
    const ref = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 2 })
    const kv = ref.createSession()
    try {
      const c = await session(s)
      expect(c.transport).to.equal(InferTransport.DIRECT)
      const h = fixture.config.hiddenSize
      const rows = prompt.length / h
      const [a, b] = await Promise.all([
        c.forward(prompt.subarray(0, 3 * h), 3, h, 0),
        c.forward(prompt.subarray(3 * h), rows - 3, h, 3)
      ])
      const wantA = await ref.forwardData(kv, prompt.subarray(0, 3 * h), 0)
      const wantB = await ref.forwardData(kv, prompt.subarray(3 * h), 3)
      expect([a.seq, a.startPos, a.rows, a.kind, b.seq, b.startPos, b.rows]).to.deep.equal([1, 0, 3, ResultKind.HIDDEN, 2, 3, rows - 3])
      expect(maxAbsDiff(a.data, wantA)).to.be.below(1e-6)
      expect(maxAbsDiff(b.data, wantB)).to.be.below(1e-6)
      const st = s.server.stats
      expect([st.sessions, st.opened, st.steps, st.positions]).to.deep.equal([1, 1, 2, rows])
      expect(st.computeMs).to.be.above(0)
    } finally {
      kv.dispose()
      ref.dispose()
    }
  })

  it('a stage holding the head returns logits with the LOGITS flag', async () => {
    const first = await stage(0, 2)
    const last = await stage(2, 4)
    const a = await session(first)
    const b = await session(last, { flags: OpenFlags.LOGITS })
    const h = fixture.config.hiddenSize
    const mid = await a.forward(prompt, prompt.length / h, h, 0)
    const out = await b.forward(mid.data, mid.rows, h, 0)
    expect([out.kind, out.rows, out.cols]).to.deep.equal([ResultKind.LOGITS, 1, fixture.config.vocabSize])
    expect(maxAbsDiff(out.data, fixture.expected.greedy.step_logits[0])).to.be.below(1e-3)
    await expect(session(first, { flags: OpenFlags.LOGITS })).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.WRONG_RANGE)
  })

  it('serves a sub-range of its layers: OPEN [1, 3) on a [0, 4) stage gives the hidden states of a stage holding exactly [1, 3)', async () => {
    const wide = await stage(0, 4)
    const exact = await stage(1, 3)
    const first = await session(await stage(0, 1))
    const h = fixture.config.hiddenSize
    const rows = prompt.length / h
    const x = await first.forward(prompt, rows, h, 0)
    const sub = await session(wide, { start: 1, end: 3, maxLength: 64 })
    const ref = await session(exact)
    const [got, want] = await Promise.all([sub.forward(x.data, rows, h, 0), ref.forward(x.data, rows, h, 0)])
    expect([got.kind, got.rows, got.cols]).to.deep.equal([ResultKind.HIDDEN, rows, h])
    expect(maxAbsDiff(got.data, want.data)).to.be.below(1e-6)
    // decode steps and a rewind go on matching
    const next = x.data.subarray((rows - 1) * h)
    const [g2, w2] = await Promise.all([sub.forward(next, 1, h, rows), ref.forward(next, 1, h, rows)])
    expect(maxAbsDiff(g2.data, w2.data)).to.be.below(1e-6)
    await sub.truncate(2)
    const g3 = await sub.forward(x.data.subarray(2 * h), rows - 2, h, 2)
    expect(maxAbsDiff(g3.data, want.data.subarray(2 * h))).to.be.below(1e-6)
    // the whole span on the same stage still works
    const all = await session(wide, { maxLength: 64 })
    const y = await all.forward(prompt, rows, h, 0)
    expect(y.rows).to.equal(rows)
    expect(wide.server.stats).to.include({ sessions: 2, opened: 2, rejected: 0 })
    // a session reserves cache for the layers it runs: [1, 3) of [0, 4) reserves half its positions
    expect(wide.server.stats.reservedPositions).to.equal(64 + 32)
    // reaching outside the held layers: WRONG_RANGE (an empty range does not even decode: BAD_FRAME)
    for (const [start, end] of [[0, 2], [2, 4], [0, 4]]) {
      await expect(session(exact, { start, end }), `[${start}, ${end})`).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.WRONG_RANGE)
    }
    expect(exact.server.stats.rejected).to.equal(3)
    await expect(session(exact, { start: 2, end: 2 })).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.BAD_FRAME)
  })

  it('LOGITS only for a session that ends at the stage\'s end, on a stage holding the head', async () => {
    const wide = await stage(0, 4)
    expect(wide.layers.hasHead).to.equal(true)
    const h = fixture.config.hiddenSize
    const rows = prompt.length / h
    const a = await session(wide, { start: 0, end: 2 })
    const b = await session(wide, { start: 2, end: 4, flags: OpenFlags.LOGITS })
    const mid = await a.forward(prompt, rows, h, 0)
    const out = await b.forward(mid.data, rows, h, 0)
    expect([out.kind, out.rows, out.cols]).to.deep.equal([ResultKind.LOGITS, 1, fixture.config.vocabSize])
    expect(maxAbsDiff(out.data, fixture.expected.greedy.step_logits[0])).to.be.below(1e-3)
    await expect(session(wide, { start: 0, end: 3, flags: OpenFlags.LOGITS })).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.WRONG_RANGE)
  })

  it('serves sessions pinned to its weights version and refuses another version with WRONG_VERSION (an unpinned session is served)', async () => {
    const v1 = '11'.repeat(32)
    const v2 = '22'.repeat(32)
    const s = await stage(0, 2, { weightsVersion: v1 })
    const h = fixture.config.hiddenSize
    const rows = prompt.length / h
    const pinned = await session(s, { weightsVersion: v1 })
    const out = await pinned.forward(prompt, rows, h, 0)
    const unpinned = await session(s)
    expect((await unpinned.forward(prompt, rows, h, 0)).data).to.deep.equal(out.data)
    const err = await session(s, { weightsVersion: v2 }).then(() => undefined, (e: any) => e)
    expect(err).to.have.property('remoteCode', InferErrorCode.WRONG_VERSION)
    expect(err.message).to.include(v1).and.include(v2)
    expect(failureReason(err)).to.equal(FailureReason.VERSION)
    expect(s.server.stats).to.include({ weightsVersion: v1, rejected: 1 })
    // a stage that names no version refuses every pin
    const plain = await stage(2, 4)
    await expect(session(plain, { weightsVersion: v1 })).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.WRONG_VERSION)
  })

  it('answers BUSY at once when its sessions or its cache room are full', async () => {
    const s = await stage(0, 2, { maxSessions: 2, maxCachePositions: 280, defaultMaxLength: 200 })
    // what the node record announces: room for one session of the default 200 positions
    expect(s.server.stats.freeSessions).to.equal(1)
    await session(s, { maxLength: 100 })
    expect(s.server.stats.freeSessions).to.equal(0)
    await expect(session(s, { maxLength: 201 })).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.TOO_LONG)
    // 200 more of 280 positions would overflow the cache budget
    await expect(session(s, { maxLength: 0 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(s, { maxLength: 150 })
    await expect(session(s, { maxLength: 10 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    expect(s.server.stats).to.include({ sessions: 2, busy: 2, rejected: 1, reservedPositions: 250, freePositions: 30, freeSessions: 0 })
    // a closed session frees its room
    await open[0].close()
    await waitFor('the session to be released', () => s.server.stats.sessions === 1)
    await session(s, { maxLength: 10 })
  })

  it('a sub-range session reserves cache positions for its share of the layers, rounded up', async () => {
    const s = await stage(0, 4, { maxSessions: 10, maxCachePositions: 100, defaultMaxLength: 60 })
    await session(s, { maxLength: 60 })
    const half = await session(s, { start: 0, end: 2, maxLength: 30 })
    expect(s.server.stats).to.include({ reservedPositions: 75, freePositions: 25 })
    // one layer of four for 58 positions reserves 15 (14.5 rounded up)
    await session(s, { start: 3, end: 4, maxLength: 58 })
    expect(s.server.stats).to.include({ reservedPositions: 90, sessions: 3 })
    // two layers for 22 positions would reserve 11 of the 10 left: BUSY; 20 positions fit exactly
    await expect(session(s, { start: 1, end: 3, maxLength: 22 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(s, { start: 1, end: 3, maxLength: 20 })
    expect(s.server.stats).to.include({ reservedPositions: 100, freePositions: 0, sessions: 4 })
    await half.close()
    await waitFor('the session to be released', () => s.server.stats.sessions === 3)
    expect(s.server.stats.reservedPositions).to.equal(85)
  })

  it('counts queued work in whole-span steps: a step over k of the n layers counts k / n', async () => {
    const s = await stage(0, 4, { faults: { stepDelayMs: 1000 } })
    const quarter = await session(s, { start: 0, end: 1 })
    const whole = await session(s)
    const h = fixture.config.hiddenSize
    const row = prompt.subarray(0, h)
    // one quarter step computes (held 1 s by the injected delay), two wait: half a whole-span step
    const steps = Array.from({ length: 3 }, async () => quarter.forward(row, 1, h, 0))
    await waitFor('two steps to queue', () => s.server.stats.queuedSteps === 2)
    expect(s.server.stats.queuedSpanSteps).to.be.closeTo(0.5, 1e-9)
    steps.push(...Array.from({ length: 2 }, async () => whole.forward(row, 1, h, 0)))
    await waitFor('four steps to queue', () => s.server.stats.queuedSteps === 4)
    expect(s.server.stats.queuedSpanSteps).to.be.closeTo(2.5, 1e-9)
    await Promise.all(steps)
    expect(s.server.stats).to.include({ queuedSteps: 0, queuedSpanSteps: 0 })
  })

  it('admits by priority: background fills half, batch three quarters, interactive all; an idle stage admits anyone', async () => {
    const s = await stage(0, 2, { maxSessions: 4, maxCachePositions: 400, defaultMaxLength: 100 })
    const [background, batch, interactive] = [0, 1, 2]
    const first = await session(s, { priority: background, maxLength: 10 })
    await session(s, { priority: background, maxLength: 10 })
    await expect(session(s, { priority: background, maxLength: 10 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(s, { priority: batch, maxLength: 10 })
    await expect(session(s, { priority: batch, maxLength: 10 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(s, { priority: interactive, maxLength: 10 })
    await expect(session(s, { priority: interactive, maxLength: 10 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    expect(s.server.stats).to.include({ sessions: 4, busy: 3, peakSessions: 4 })
    await first.close()
    await waitFor('the session to be released', () => s.server.stats.sessions === 3)
    await session(s, { priority: interactive, maxLength: 10 })
    // the cache share binds the same way: background may fill 200 of 400 positions
    const cache = await stage(0, 2, { maxSessions: 10, maxCachePositions: 400, defaultMaxLength: 200 })
    await session(cache, { priority: background, maxLength: 150 })
    await expect(session(cache, { priority: background, maxLength: 100 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(cache, { priority: batch, maxLength: 100 })
    await expect(session(cache, { priority: batch, maxLength: 100 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.BUSY)
    await session(cache, { priority: interactive, maxLength: 150 })
    expect(cache.server.stats).to.include({ sessions: 3, reservedPositions: 400, peakReservedPositions: 400 })
    // an idle stage takes a background session of any length it grants
    const idle = await stage(0, 2, { maxSessions: 1, maxCachePositions: 100, defaultMaxLength: 100 })
    await session(idle, { priority: background, maxLength: 100 })
    expect(idle.server.stats).to.include({ sessions: 1, peakReservedPositions: 100 })
  })

  it('an idle session loses its cache and its stream', async () => {
    const s = await stage(0, 2, { idleTimeoutMs: 200 })
    const c = await session(s)
    const h = fixture.config.hiddenSize
    await c.forward(prompt, prompt.length / h, h, 0)
    expect(s.server.stats.sessions).to.equal(1)
    await waitFor('the idle session to expire', () => s.server.stats.sessions === 0)
    expect(s.server.stats).to.include({ expired: 1, reservedPositions: 0 })
    await waitFor('the client to see the stream end', () => !c.isOpen)
    await expect(c.forward(prompt, prompt.length / h, h, 0)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.EXPIRED)
  })

  it('a bad step gets ERROR for that step and the session goes on', async () => {
    const s = await stage(0, 2, { defaultMaxLength: 8 })
    const c = await session(s)
    const h = fixture.config.hiddenSize
    await expect(c.forward(prompt, prompt.length / h, h, 3)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.BAD_REQUEST)
    await expect(c.forward(new Float32Array(9 * h), 9, h, 0)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.TOO_LONG)
    await expect(c.forward(new Float32Array(2 * 8), 2, 8, 0)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.BAD_REQUEST)
    const ok = await c.forward(prompt, prompt.length / h, h, 0)
    expect(ok.rows).to.equal(prompt.length / h)
    await c.truncate(2)
    const again = await c.forward(prompt.subarray(2 * h, 3 * h), 1, h, 2)
    expect(maxAbsDiff(again.data, ok.data.subarray(2 * h, 3 * h))).to.be.below(1e-5)
    expect(s.server.stats).to.include({ sessions: 1, errors: 3, steps: 2, malformed: 0 })
    // a TRUNCATE past the cache means client and stage disagree: the session ends
    await c.truncate(10)
    await expect(c.forward(prompt.subarray(0, h), 1, h, 3)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.BAD_REQUEST)
    await waitFor('the session to be released', () => s.server.stats.sessions === 0)
  })

  it('a malformed frame gets ERROR, that stream is aborted, and the stage keeps serving others', async () => {
    const s = await stage(0, 2, { maxFrameBytes: 1 << 16 })
    const good = await session(s)
    const h = fixture.config.hiddenSize
    const rows = prompt.length / h
    const before = await good.forward(prompt, rows, h, 0)

    // garbage as the first frame
    const r1 = await raw(s)
    r1.send(Uint8Array.of(4, 99, 0, 0, 0))
    await r1.closed
    expect(r1.frames).to.have.length(1)
    expect(r1.frames[0]).to.include({ type: 'error', code: InferErrorCode.BAD_FRAME })

    // garbage after a good OPEN
    const r2 = await raw(s)
    r2.send(openFrame(s, 77))
    await waitFor('OPEN_OK', () => r2.frames.length === 1)
    expect(s.server.stats.sessions).to.equal(2)
    r2.send(Uint8Array.of(5, 5, 1, 0, 0, 0))
    await r2.closed
    expect(r2.frames.map(f => f.type)).to.deep.equal(['open-ok', 'error'])

    // a length prefix over maxFrameBytes
    const r3 = await raw(s)
    r3.send(encodeVarint(1 << 20))
    r3.send(new Uint8Array(1024))
    await r3.closed
    expect(r3.frames[0]).to.include({ type: 'error', code: InferErrorCode.BAD_FRAME })

    // a FORWARD before OPEN
    const r4 = await raw(s)
    r4.send(encodeInferFrameBytes({ type: 'close', sessionId: 1 }))
    await r4.closed
    expect(r4.frames[0]).to.include({ type: 'error', code: InferErrorCode.NOT_OPEN })

    await waitFor('the broken sessions to be released', () => s.server.stats.sessions === 1)
    expect(s.server.stats.malformed).to.equal(4)
    await good.truncate(0)
    const after = await good.forward(prompt, rows, h, 0)
    expect(maxAbsDiff(after.data, before.data)).to.equal(0)
  })

  it('refuses a client that floods more steps than it may queue', async () => {
    const s = await stage(0, 2, { maxQueuedSteps: 1 })
    const c = await session(s)
    const h = fixture.config.hiddenSize
    const steps = Array.from({ length: 40 }, async (_, i) => c.forward(prompt.subarray(0, h), 1, h, 0).then(() => 'ok', (err) => err.remoteCode ?? err.code))
    const outcomes = await Promise.all(steps)
    expect(outcomes).to.include(InferErrorCode.OVERLOADED)
    expect(s.server.stats.malformed).to.equal(1)
    await waitFor('the session to be released', () => s.server.stats.sessions === 0)
  })

  it('stop() tells open sessions SHUTTING_DOWN and frees them', async () => {
    const s = await stage(0, 2)
    const c = await session(s)
    await s.server.stop()
    expect(s.server.stats).to.include({ sessions: 0, reservedPositions: 0 })
    await waitFor('the client to see the stream end', () => !c.isOpen)
    const h = fixture.config.hiddenSize
    await expect(c.forward(prompt, prompt.length / h, h, 0)).to.eventually.be.rejected.with.property('remoteCode', InferErrorCode.SHUTTING_DOWN)
    await expect(session(s)).to.eventually.be.rejected.with.property('code', PipelineErrorCode.STREAM_CLOSED)
  })
})
