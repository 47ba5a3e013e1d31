import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { loadFixture, maxAbsDiff, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage, waitFor } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { PipelineClient } from '../../src/pipeline/pipeline-client.ts'
import type { RouteHop } from '../../src/pipeline/route.ts'
import type { Fixture } from '../model/fixtures.ts'

function routeOf (stages: TestStage[]): RouteHop[] {
  return stages.map(s => ({ peerId: s.node.peerId, multiaddrs: s.node.getMultiaddrs(), start: s.layers.start, end: s.layers.end }))
}

describe('pipeline: greedy generation through loopback stages', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let full: LayerRange
  let local: LayerRange
  let client: BlyLibp2p
  const stages: TestStage[] = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    full = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 4, embedding: true, head: true })
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    client = await startNode()
    stages.push(await startStage(fixture, 0, 2), await startStage(fixture, 2, 3), await startStage(fixture, 3, 4))
  })

  after(async () => {
    await client?.stop()
    await Promise.allSettled(stages.map(async s => s.stop()))
    full?.dispose()
    local?.dispose()
  })

  function pipeline (route = routeOf(stages)): PipelineClient {
    return createPipelineClient({ libp2p: client, modelId: MODEL_ID, local, route })
  }

  it('greedy tokens equal the reference and the stages are closed afterwards', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const out: number[] = []
    const it = generate(pipeline(), prompt, { maxNewTokens: tokens.length })
    let result
    for (;;) {
      const next = await it.next()
      if (next.done === true) {
        result = next.value
        break
      }
      out.push(next.value.id)
    }
    expect(out).to.deep.equal(tokens)
    expect(result.tokens).to.deep.equal(tokens)
    await waitFor('stage sessions to close', () => stages.every(s => s.server.stats.sessions === 0))
    expect(stages.map(s => s.server.stats.closed)).to.deep.equal([1, 1, 1])
    // stages offer a direct channel by default and the client takes it
    expect(stages.map(s => s.server.stats.direct)).to.deep.equal([1, 1, 1])
    expect(stages.map(s => s.server.stats.steps)).to.deep.equal([tokens.length, tokens.length, tokens.length])
  })

  it('logits of every step equal the single-process run within 1e-5, and the client keeps every input', async () => {
    const { prompt, tokens, step_logits: stepLogits } = fixture.expected.greedy
    const session = pipeline().createSession()
    const ref = full.createSession()
    try {
      let feed = prompt
      for (let i = 0; i < 6; i++) {
        const got = await session.nextLogits(feed)
        const want = await full.nextLogits(ref, feed)
        expect(maxAbsDiff(got, want)).to.be.below(1e-5)
        expect(maxAbsDiff(got, stepLogits[i])).to.be.below(1e-3)
        feed = [tokens[i]]
      }
      expect(session.length).to.equal(prompt.length + 5)
      const hidden = fixture.config.hiddenSize
      for (let s = 0; s < 3; s++) {
        const inputs = session.inputs(s)
        expect(inputs.map(x => x.startPos)).to.deep.equal([0, 5, 6, 7, 8, 9])
        expect(inputs.map(x => x.rows)).to.deep.equal([5, 1, 1, 1, 1, 1])
        expect(inputs.every(x => x.data.length === x.rows * hidden)).to.equal(true)
      }
      // stage 1's inputs are stage 0's outputs: a replay could rebuild either cache
      expect(maxAbsDiff(session.inputs(1)[0].data, session.inputs(0)[0].data)).to.be.above(0)
      expect(session.stats.stageMs.every(ms => ms > 0)).to.equal(true)
    } finally {
      await session.close()
      ref.dispose()
    }
  })

  it('all-row logits of a prefill equal the reference full logits, and truncate rewinds every stage', async () => {
    const { sequence, full_logits: fullLogits } = fixture.expected
    const session = pipeline().createSession()
    try {
      const all = await session.forward(sequence, { allRows: true })
      expect(all.rows).to.equal(sequence.length)
      const rowDiffs = fullLogits.map((want, r) => maxAbsDiff(all.logits.subarray(r * all.vocab, (r + 1) * all.vocab), want))
      expect(Math.max(...rowDiffs)).to.be.below(1e-3)
      // rewind to 7 positions and feed the rest again: the same last logits
      await session.truncate(7)
      expect(session.length).to.equal(7)
      expect(session.inputs(0).map(x => x.rows)).to.deep.equal([7])
      const again = await session.nextLogits(sequence.slice(7))
      expect(maxAbsDiff(again, all.logits.subarray((sequence.length - 1) * all.vocab))).to.be.below(1e-5)
    } finally {
      await session.close()
    }
  })

  it('generate() over a pipeline matches generate() over the local model with seeded sampling', async () => {
    const options = { maxNewTokens: 8, sampling: { temperature: 1.2, topK: 20, seed: 7 } }
    const collect = async (it: AsyncGenerator<{ id: number }>): Promise<number[]> => {
      const ids: number[] = []
      for await (const t of it) {
        ids.push(t.id)
      }
      return ids
    }
    expect(await collect(generate(pipeline(), [1, 2, 3], options))).to.deep.equal(await collect(generate(full, [1, 2, 3], options)))
  })

  it('rejects routes that do not cover the layers in order', () => {
    const good = routeOf(stages)
    for (const route of [[], [good[0], good[2]], [good[1], good[0], good[2]], good.slice(0, 2)]) {
      expect(() => pipeline(route)).to.throw().with.property('code', PipelineErrorCode.BAD_ROUTE)
    }
  })

  it('a stage that holds other layers refuses the session with WRONG_RANGE', async () => {
    const route = routeOf(stages)
    route[1] = { ...route[1], end: 4 }
    route.pop()
    const session = pipeline(route).createSession()
    try {
      await session.nextLogits([1, 2]).then(() => expect.fail('should fail'), (err) => {
        expect(err).to.have.property('code', PipelineErrorCode.REMOTE)
        expect(err).to.have.property('stage', 1)
      })
    } finally {
      await session.close()
    }
    await waitFor('stage sessions to close', () => stages.every(s => s.server.stats.sessions === 0))
  })
})
