/**
 * What a stage must refuse and release, driven over real libp2p streams and
 * real direct TLS channels: hidden states with NaN / ±Inf (refused before the
 * KV cache is touched), a malformed length prefix (ERROR, stream ended,
 * session slot freed at once) and partially received frames (bounded per
 * stage, released when their stream ends).
 */
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { FrameDecoder } from '../../src/net/frame-decoder.ts'
import { FrameStream } from '../../src/net/frame-stream.ts'
import { DIRECT_OFFER_PROTOCOL, connectDirectChannel, requestDirectOffer } from '../../src/pipeline/direct-channel/index.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { firstNonFinite } from '../../src/pipeline/finite.ts'
import { PartialFrameBudget } from '../../src/pipeline/frame-budget.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { inferFrameCodec, inferFrameErrors } from '../../src/pipeline/infer-frames.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { embedData } from '../../src/pipeline/stage-layers.ts'
import { createStageServer } from '../../src/pipeline/stage-server.ts'
import { INFER_PROTOCOL, InferErrorCode, encodeInferFrameBytes, f32Tensor } from '../../src/protocols/infer.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { loadFixture, maxAbsDiff, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageClientInit } from '../../src/pipeline/stage-client.ts'
import type { InferFrame } from '../../src/protocols/infer.ts'
import type { Fixture } from '../model/fixtures.ts'

type Transport = 'libp2p' | 'direct'

describe('pipeline/frame decoding rules shared by both transports', () => {
  it('firstNonFinite finds NaN, +Inf and -Inf anywhere, and nothing in finite values', () => {
    const x = new Float32Array(1000).map((_, i) => (i - 500) * 1e35)
    expect(firstNonFinite(x)).to.equal(-1)
    expect(firstNonFinite(Float32Array.of(3.4e38, -3.4e38, 1e-45, -0))).to.equal(-1)
    for (const v of [NaN, Infinity, -Infinity]) {
      for (const at of [0, 499, 999]) {
        const y = x.slice()
        y[at] = v
        expect(firstNonFinite(y), `${v} at ${at}`).to.equal(at)
      }
    }
  })

  it('refuses a length prefix of more than 5 bytes as soon as it is one, byte by byte or whole', () => {
    const dec = new FrameDecoder(1 << 20, inferFrameErrors)
    for (let i = 0; i < 4; i++) {
      dec.push(Uint8Array.of(0xff), () => {})
    }
    expect(dec.idle).to.equal(false)
    expect(() => { dec.push(Uint8Array.of(0xff), () => {}) }).to.throw().with.property('code', PipelineErrorCode.BAD_FRAME)
    expect(() => { new FrameDecoder(1 << 20, inferFrameErrors).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), () => {}) }).to.throw().with.property('code', PipelineErrorCode.BAD_FRAME)
    // 5 bytes that end: a length, here over the limit
    expect(() => { new FrameDecoder(1 << 20, inferFrameErrors).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f), () => {}) }).to.throw(/over the/)
    expect(() => { new FrameDecoder(1 << 20, inferFrameErrors).push(Uint8Array.of(0x80, 0x00), () => {}) }).to.throw(/empty frame/)
  })

  it('charges a frame buffer that outlives a read to the budget, gives it back when the frame completes or the decoder resets, refuses one that does not fit', () => {
    const budget = new PartialFrameBudget(250)
    const frame = (len: number): Uint8Array => {
      const f = new Uint8Array(len + 2)
      f[0] = 0x80 | (len & 0x7f)
      f[1] = len >> 7
      return f
    }
    const a = new FrameDecoder(200, inferFrameErrors, budget)
    const b = new FrameDecoder(200, inferFrameErrors, budget)
    const got: number[] = []
    // a whole frame inside one chunk is never held
    a.push(frame(150), body => got.push(body.length))
    expect([got, budget.held]).to.deep.equal([[150], 0])
    a.push(frame(150).subarray(0, 40), body => got.push(body.length))
    expect(budget.held).to.equal(150)
    // 150 + 120 > 250: refused, nothing held for it
    expect(() => { b.push(frame(120).subarray(0, 10), () => {}) }).to.throw().with.property('code', PipelineErrorCode.PARTIAL_FRAMES_FULL)
    expect([budget.held, budget.refused]).to.deep.equal([150, 1])
    // 100 fits
    const c = new FrameDecoder(200, inferFrameErrors, budget)
    c.push(frame(100).subarray(0, 3), () => {})
    expect([budget.held, budget.peak]).to.deep.equal([250, 250])
    a.push(new Uint8Array(112), body => got.push(body.length))
    expect([got, budget.held]).to.deep.equal([[150, 150], 100])
    c.reset()
    c.reset()
    expect([budget.held, c.idle]).to.deep.equal([0, true])
  })

  it('a reset from inside emit ends the read in progress: nothing after it is decoded or charged', () => {
    const budget = new PartialFrameBudget(1000)
    const dec = new FrameDecoder(1000, inferFrameErrors, budget)
    const close = Uint8Array.of(1, 8)
    const chunk = new Uint8Array(2 + 2 + 3)
    chunk.set(close, 0)
    chunk.set(close, 2)
    // then the start of a 100-byte frame
    chunk.set(Uint8Array.of(100, 0, 0), 4)
    const got: number[] = []
    dec.push(chunk, (body) => {
      got.push(body.length)
      dec.reset()
    })
    expect([got, budget.held, dec.idle]).to.deep.equal([[1], 0, true])
  })
})

/** A channel to a stage that sends bytes as given and collects the frames it receives. */
interface RawChannel {
  frames: InferFrame[]
  /** the stage ended the channel (or the client aborted it) */
  ended: boolean
  send(bytes: Uint8Array): void
  abort(): void
}

describe('pipeline/stage reliability: non-finite inputs, malformed prefixes, partial frames', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let client: BlyLibp2p
  let prompt: Float32Array
  let hidden: number
  let rows: number
  const stages: TestStage[] = []
  const open: StageClient[] = []
  const raws: RawChannel[] = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    prompt = await embedData(local, fixture.expected.greedy.prompt)
    hidden = fixture.config.hiddenSize
    rows = prompt.length / hidden
    client = await startNode()
  })

  afterEach(async () => {
    for (const r of raws) {
      r.abort()
    }
    raws.length = 0
    await Promise.allSettled(open.map(async c => c.close()))
    open.length = 0
    await Promise.allSettled(stages.map(async s => s.stop()))
    stages.length = 0
  })

  after(async () => {
    await client?.stop()
    local?.dispose()
  })

  async function stage (init: Parameters<typeof startStage>[3] = {}): Promise<TestStage> {
    const s = await startStage(fixture, 0, 2, init)
    stages.push(s)
    return s
  }

  async function session (s: TestStage, transport: Transport, init: Partial<StageClientInit> = {}): Promise<StageClient> {
    const c = await StageClient.open({ libp2p: client, peer: s.node.getMultiaddrs(), modelId: MODEL_ID, start: 0, end: 2, sessionId: open.length + 1, directChannel: transport === 'direct', ...init })
    expect(c.transport).to.equal(transport === 'direct' ? InferTransport.DIRECT : InferTransport.LIBP2P)
    open.push(c)
    return c
  }

  /** A raw /bly/infer/1.0.0 libp2p stream, or a raw direct TLS channel, to the stage. */
  async function raw (s: TestStage, transport: Transport): Promise<RawChannel> {
    const frames: InferFrame[] = []
    const handlers = {
      onFrame: (f: InferFrame) => { frames.push(f) },
      onBadFrame: () => { r.ended = true },
      onClose: () => { r.ended = true }
    }
    let r: RawChannel
    if (transport === 'libp2p') {
      const stream = await client.dialProtocol(s.node.getMultiaddrs(), INFER_PROTOCOL)
      const reader = new FrameStream(stream, { codec: inferFrameCodec, maxFrameBytes: 1 << 20, ...handlers })
      r = { frames, ended: false, send: (bytes) => { stream.send(bytes) }, abort: () => { reader.abort(new Error('test client aborts')) } }
    } else {
      const offerStream = await client.dialProtocol(s.node.getMultiaddrs(), DIRECT_OFFER_PROTOCOL)
      const offer = await requestDirectOffer(offerStream, { remoteHost: '127.0.0.1' })
      const channel = await connectDirectChannel(offer, { maxFrameBytes: 1 << 20, ...handlers })
      r = { frames, ended: false, send: (bytes) => { channel.socket.write(bytes) }, abort: () => { channel.abort(new Error('test client aborts')) } }
    }
    raws.push(r)
    return r
  }

  const openFrame = (sessionId: number): Uint8Array => encodeInferFrameBytes({ type: 'open', version: 1, sessionId, modelId: MODEL_ID, start: 0, end: 2, maxLength: 0, priority: 0, flags: 0 })

  async function rawSession (s: TestStage, transport: Transport, sessionId: number): Promise<RawChannel> {
    const r = await raw(s, transport)
    r.send(openFrame(sessionId))
    await waitFor('OPEN_OK', () => r.frames.length === 1)
    expect(r.frames[0]).to.include({ type: 'open-ok', sessionId })
    return r
  }

  describe('hidden states with NaN or ±Inf are refused before the cache is touched', () => {
    const poisons: Array<[string, (x: Float32Array) => void]> = [
      ['NaN in all values', (x) => { x.fill(NaN) }],
      ['a single NaN among finite values', (x) => { x[(x.length >> 1) + 3] = NaN }],
      ['+Inf', (x) => { x[7] = Infinity }],
      ['-Inf', (x) => { x[x.length - 1] = -Infinity }]
    ]
    poisons.forEach(([name, poison]) => {
      it(`${name}: ERROR NON_FINITE_INPUT, and later finite steps give what a fresh session gives (libp2p stream and direct channel)`, async () => {
        const s = await stage()
        const next = prompt.subarray((rows - 1) * hidden)
        for (const transport of ['libp2p', 'direct'] as const) {
          const c = await session(s, transport)
          await c.forward(prompt, rows, hidden, 0)
          // a re-prefill from 0 would rewind the cache to 0 were it computed; a decode step would append a poisoned position
          const all = prompt.slice()
          poison(all)
          const one = next.slice()
          poison(one)
          for (const [x, n, at] of [[all, rows, 0], [one, 1, rows]] as const) {
            const err = await c.forward(x, n, hidden, at).then(() => undefined, (e: Error) => e)
            expect(err, `a poisoned [${n}, ${hidden}] step at ${at} was computed`).to.have.property('remoteCode', InferErrorCode.NON_FINITE_INPUT)
            expect(err).to.have.property('code', PipelineErrorCode.REMOTE)
          }
          // the session goes on from the cache it had: the same as a fresh session doing only the finite steps
          const got = await c.forward(next, 1, hidden, rows)
          const fresh = await session(s, transport)
          await fresh.forward(prompt, rows, hidden, 0)
          const want = await fresh.forward(next, 1, hidden, rows)
          expect(got.data.every(Number.isFinite)).to.equal(true)
          expect(maxAbsDiff(got.data, want.data)).to.equal(0)
        }
        expect(s.server.stats).to.include({ nonFinite: 4, errors: 4, malformed: 0, sessions: 4 })
        // 2 sessions x (prefill + decode) per transport: the refused steps computed nothing
        expect(s.server.stats).to.include({ steps: 8, positions: 4 * (rows + 1) })
      })
    })
  })

  const transports: Transport[] = ['libp2p', 'direct']
  transports.forEach((transport) => {
    it(`a malformed length prefix (ff x10 then 01) gets ERROR BAD_FRAME, ends the stream and frees the session slot at once (${transport})`, async () => {
      const s = await stage({ maxSessions: 1 })
      const r = await rawSession(s, transport, 41)
      expect(s.server.stats.sessions).to.equal(1)
      r.send(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))
      // a valid FORWARD right behind it is not answered: the stream is over
      r.send(encodeInferFrameBytes({ type: 'forward', sessionId: 41, seq: 1, startPos: 0, tensor: f32Tensor(prompt, rows, hidden) }))
      await waitFor('the stage to answer ERROR', () => r.frames.length === 2)
      expect(r.frames[1]).to.include({ type: 'error', code: InferErrorCode.BAD_FRAME, seq: 0 })
      // the slot was freed before the ERROR went out
      expect(s.server.stats).to.include({ sessions: 0, malformed: 1, steps: 0 })
      await waitFor('the stream to end', () => r.ended)
      expect(r.frames.map(f => f.type)).to.deep.equal(['open-ok', 'error'])
      // the one slot takes a new session at once
      const c = await session(s, transport)
      const out = await c.forward(prompt, rows, hidden, 0)
      expect(out.rows).to.equal(rows)
      expect(s.server.stats).to.include({ sessions: 1, steps: 1 })
    })
  })

  it('bounds the bytes partially received frames hold over all its streams, refuses a frame past the bound (OVERLOADED) and releases a stream\'s share when the stream ends', async () => {
    const maxFrameBytes = 1 << 20
    // room for two frames being received, not three
    const s = await stage({ maxFrameBytes, maxPartialFrameBytes: 5 * (maxFrameBytes >> 1), openTimeoutMs: 2_000 })
    expect(s.server.stats).to.include({ partialFrameBytes: 0, maxPartialFrameBytes: 5 * (maxFrameBytes >> 1), partialFramesRefused: 0 })
    const big = Math.floor((maxFrameBytes - 24) / (4 * hidden))
    const frame = (sessionId: number): Uint8Array => encodeInferFrameBytes({ type: 'forward', sessionId, seq: 1, startPos: 0, tensor: f32Tensor(new Float32Array(big * hidden).fill(0.25), big, hidden) })
    const body = 24 + 4 * big * hidden
    const half = (sessionId: number): Uint8Array => frame(sessionId).subarray(0, body >> 1)

    // two sessions, one per transport, each holding half of a frame: each holds the frame's whole buffer
    const a = await rawSession(s, 'libp2p', 1)
    a.send(half(1))
    await waitFor('the first partial frame to be held', () => s.server.stats.partialFrameBytes === body)
    const b = await rawSession(s, 'direct', 2)
    b.send(half(2))
    await waitFor('the second partial frame to be held', () => s.server.stats.partialFrameBytes === 2 * body)

    // a third frame, over either transport, would pass the bound: ERROR OVERLOADED, stream aborted, nothing held
    for (const [i, transport] of (['libp2p', 'direct'] as const).entries()) {
      const c = await rawSession(s, transport, 3 + i)
      c.send(half(3 + i))
      await waitFor(`the third frame to be refused (${transport})`, () => c.ended)
      expect(c.frames.map(f => f.type)).to.deep.equal(['open-ok', 'error'])
      expect(c.frames[1]).to.include({ code: InferErrorCode.OVERLOADED })
      expect(s.server.stats).to.include({ partialFrameBytes: 2 * body, partialFramesRefused: i + 1 })
    }
    await waitFor('the refused sessions to be released', () => s.server.stats.sessions === 2)
    expect(s.server.stats.peakPartialFrameBytes).to.equal(2 * body)

    // a client that aborts its stream mid-frame: its share is released
    a.abort()
    await waitFor('the aborted stream\'s partial frame to be released', () => s.server.stats.partialFrameBytes === body)
    expect(s.server.stats.sessions).to.equal(1)

    // the rest of b's frame arrives: a whole frame is not partial any more, and the step is answered
    // (an ERROR for the step: its rows are more than the session's positions; the session goes on)
    b.send(frame(2).subarray(body >> 1))
    await waitFor('the answer to b\'s step', () => b.frames.length === 2)
    expect(b.frames[1]).to.include({ type: 'error', seq: 1, code: InferErrorCode.TOO_LONG })
    expect(s.server.stats.partialFrameBytes).to.equal(0)
    expect(b.ended).to.equal(false)

    // a stream the stage ends itself (no OPEN in time) mid-frame: released as well
    const d = await raw(s, 'libp2p')
    d.send(half(9))
    await waitFor('the pre-OPEN partial frame to be held', () => s.server.stats.partialFrameBytes === body)
    await waitFor('the stage to drop the stream that never OPENed', () => d.ended)
    expect(d.frames[0]).to.include({ type: 'error', code: InferErrorCode.NOT_OPEN })
    expect(s.server.stats.partialFrameBytes).to.equal(0)
    // the whole budget is free again: two more frames of that size fit
    const e = await rawSession(s, 'direct', 10)
    const f = await rawSession(s, 'libp2p', 11)
    e.send(half(10))
    f.send(half(11))
    await waitFor('two partial frames to be held again', () => s.server.stats.partialFrameBytes === 2 * body)
    expect(s.server.stats.partialFramesRefused).to.equal(2)
  })

  it('an idle session expired mid-frame, or a closed stage, holds no partial frame', async () => {
    const s = await stage({ maxFrameBytes: 1 << 20, idleTimeoutMs: 1_000 })
    const big = 64
    const bytes = encodeInferFrameBytes({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(new Float32Array(big * hidden).fill(0.5), big, hidden) })
    const body = 24 + 4 * big * hidden
    for (const transport of ['libp2p', 'direct'] as const) {
      const r = await rawSession(s, transport, 1)
      r.send(bytes.subarray(0, bytes.length - 100))
      await waitFor('the partial frame to be held', () => s.server.stats.partialFrameBytes === body)
      await waitFor('the session to expire', () => s.server.stats.sessions === 0 && r.frames.length === 2)
      expect(r.frames[1]).to.include({ type: 'error', code: InferErrorCode.EXPIRED })
      await waitFor('its partial frame to be released', () => s.server.stats.partialFrameBytes === 0)
    }
    const r = await rawSession(s, 'direct', 2)
    r.send(bytes.subarray(0, 1000))
    await waitFor('the partial frame to be held', () => s.server.stats.partialFrameBytes === body)
    await s.server.stop()
    expect(s.server.stats.partialFrameBytes).to.equal(0)
  })

  it('refuses a partial-frame bound smaller than one frame', async () => {
    const s = await stage()
    const init = { modelId: MODEL_ID, layers: s.layers, maxFrameBytes: 1 << 20 }
    expect(() => createStageServer({ libp2p: client, logger: silentLogger() }, { ...init, maxPartialFrameBytes: (1 << 20) - 1 })).to.throw().with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
    expect(createStageServer({ libp2p: client, logger: silentLogger() }, { ...init, maxPartialFrameBytes: 1 << 20 }).stats.maxPartialFrameBytes).to.equal(1 << 20)
  })
})
