/**
 * What a stage must refuse, driven over real libp2p streams and real direct
 * TLS channels: hidden states with NaN / ±Inf (refused before the KV cache
 * is touched).
 */
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { firstNonFinite } from '../../src/pipeline/finite.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { embedData } from '../../src/pipeline/stage-layers.ts'
import { InferErrorCode } from '../../src/protocols/infer.ts'
import { loadFixture, maxAbsDiff, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageClientInit } from '../../src/pipeline/stage-client.ts'
import type { Fixture } from '../model/fixtures.ts'

type Transport = 'libp2p' | 'direct'

describe('pipeline/finite-value check', () => {
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
})

describe('pipeline/stage reliability: non-finite inputs', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let client: BlyLibp2p
  let prompt: Float32Array
  let hidden: number
  let rows: number
  const stages: TestStage[] = []
  const open: StageClient[] = []

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
})
