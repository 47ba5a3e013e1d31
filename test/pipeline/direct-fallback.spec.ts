import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { Fixture } from '../model/fixtures.ts'

describe('pipeline: direct channel with fallback to libp2p streams', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let client: BlyLibp2p
  const stages: TestStage[] = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    client = await startNode()
    stages.push(
      // an older / configured-off stage: no offer protocol at all
      await startStage(fixture, 0, 2, { directChannel: false }),
      // offers a channel nobody can reach: the TLS server listens on 127.0.0.1, the offer names 127.0.0.2
      await startStage(fixture, 2, 3, { directChannel: { host: '127.0.0.1', advertiseHost: '127.0.0.2' } }),
      // the default: a working direct channel
      await startStage(fixture, 3, 4)
    )
  })

  after(async () => {
    await client?.stop()
    await Promise.allSettled(stages.map(async s => s.stop()))
    local?.dispose()
  })

  async function open (s: TestStage, directChannel?: boolean): Promise<StageClient> {
    return StageClient.open({ libp2p: client, peer: s.node.getMultiaddrs(), modelId: MODEL_ID, start: s.layers.start, end: s.layers.end, sessionId: 7, directChannel })
  }

  it('uses the direct channel where it works and libp2p where the stage has none or it is unreachable', async () => {
    const [off, unreachable, on] = stages
    expect(off.server.directChannelPort).to.equal(undefined)
    expect(unreachable.server.directChannelPort).to.be.a('number')
    const clients = [await open(off), await open(unreachable), await open(on), await open(on, false)]
    try {
      expect(clients.map(c => c.transport)).to.deep.equal([InferTransport.LIBP2P, InferTransport.LIBP2P, InferTransport.DIRECT, InferTransport.LIBP2P])
      expect(stages.map(s => s.server.stats.direct)).to.deep.equal([0, 0, 1])
    } finally {
      await Promise.allSettled(clients.map(async c => c.close()))
    }
  })

  it('a stage whose channel cannot bind (port taken) still serves, over libp2p', async () => {
    const port = stages[2].server.directChannelPort as number
    const taken = await startStage(fixture, 3, 4, { directChannel: { host: '127.0.0.1', port } })
    try {
      expect(taken.server.isStarted()).to.equal(true)
      expect(taken.server.directChannelPort).to.equal(undefined)
      const c = await open(taken)
      try {
        expect(c.transport).to.equal(InferTransport.LIBP2P)
        const h = fixture.config.hiddenSize
        const r = await c.forward(new Float32Array(h).fill(0.5), 1, h, 0)
        expect(r.data.every(Number.isFinite)).to.equal(true)
      } finally {
        await c.close()
      }
    } finally {
      await taken.stop()
    }
  })

  it('greedy tokens through a route of all three equal the reference', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const directBefore = stages.map(s => s.server.stats.direct)
    const pipeline = createPipelineClient({
      libp2p: client,
      modelId: MODEL_ID,
      local,
      route: stages.map(s => ({ peerId: s.node.peerId, multiaddrs: s.node.getMultiaddrs(), start: s.layers.start, end: s.layers.end }))
    })
    const out: number[] = []
    for await (const t of generate(pipeline, prompt, { maxNewTokens: tokens.length })) {
      out.push(t.id)
    }
    expect(out).to.deep.equal(tokens)
    expect(stages.map((s, i) => s.server.stats.direct - directBefore[i])).to.deep.equal([0, 0, 1])
    await waitFor('stage sessions to close', () => stages.every(s => s.server.stats.sessions === 0))
  })
})
