import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { planUnits } from '../../src/model/qwen3/plan.ts'
import { tf } from '../../src/model/qwen3/tf.ts'
import { argmax } from '../../src/model/sampling.ts'
import { checkFullLogits, checkGreedy } from './fixture-checks.ts'
import { FIXTURE_VARIANTS, loadFixture, maxAbsDiff, sourceOf } from './fixtures.ts'
import type { Fixture } from './fixtures.ts'

/** Tolerance the issue asks for; a correct float32 implementation lands near 1e-6. */
const TOL = 1e-4

async function rows (t: tf.Tensor2D): Promise<number[][]> {
  try {
    return await t.array()
  } finally {
    t.dispose()
  }
}

describe('model/qwen3 plan', () => {
  it('plans embedding, one unit per layer, then norm + head', async () => {
    const { config } = await loadFixture('untied-f32')
    const units = planUnits(config)
    expect(units).to.have.length(config.numLayers + 2)
    expect(units[0]).to.deep.include({ unit: 0, kind: 'embedding' })
    expect(units[0].tensors).to.deep.equal([{ name: 'model.embed_tokens.weight', shape: [512, 64] }])
    expect(units[3]).to.deep.include({ unit: 3, kind: 'layer', layer: 2 })
    expect(units[3].tensors.find(t => t.name === 'model.layers.2.self_attn.q_proj.weight')?.shape).to.deep.equal([128, 64])
    expect(units[3].tensors.find(t => t.name === 'model.layers.2.self_attn.k_norm.weight')?.shape).to.deep.equal([32])
    expect(units[5].tensors.map(t => t.name)).to.deep.equal(['model.norm.weight', 'lm_head.weight'])
    const tied = planUnits({ ...config, tieWordEmbeddings: true })
    expect(tied[5].tensors.map(t => t.name)).to.deep.equal(['model.norm.weight'])
    // every tensor of the checkpoint is in exactly one unit
    const fixture = await loadFixture('untied-f32')
    const planned = units.flatMap(u => u.tensors.map(t => t.name)).sort()
    expect(planned).to.deep.equal([...fixture.tensors.keys()].sort())
  })
})

for (const backend of ['wasm', 'cpu'] as const) {
  for (const variant of FIXTURE_VARIANTS) {
    describe(`model/qwen3 on ${backend}: ${variant}`, function () {
      let fixture: Fixture
      let model: LayerRange

      before(async () => {
        const sel = await selectBackend(backend)
        expect(sel.name).to.equal(backend)
        fixture = await loadFixture(variant)
        model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: fixture.config.numLayers, embedding: true, head: true })
      })

      after(() => {
        model?.dispose()
      })

      it('full-sequence logits match the reference', async () => {
        await checkFullLogits(model, fixture, TOL)
      })

      it('greedy decoding through the KV cache gives the reference tokens', async () => {
        const { prompt, tokens } = fixture.expected.greedy
        expect(await checkGreedy(model, fixture, TOL)).to.equal(prompt.length + tokens.length - 1)
      })

      it('KV-cache decoding equals full recompute, for any prefill split', async () => {
        const seq = fixture.expected.sequence
        const full = model.createSession()
        const fullRows = await rows(model.forwardTokens(full, seq))
        full.dispose()
        for (const prefill of [1, 7]) {
          const s = model.createSession()
          try {
            const got = await rows(model.forwardTokens(s, seq.slice(0, prefill)))
            for (let i = prefill; i < seq.length; i++) {
              got.push(...await rows(model.forwardTokens(s, [seq[i]])))
            }
            for (let i = 0; i < seq.length; i++) {
              expect(maxAbsDiff(got[i], fullRows[i]), `prefill ${prefill}, position ${i}`).to.be.below(1e-5)
            }
          } finally {
            s.dispose()
          }
        }
      })

      it('rewinding with startPos recomputes the same positions', async () => {
        const seq = fixture.expected.sequence
        const s = model.createSession()
        try {
          await rows(model.forwardTokens(s, seq))
          const again = await rows(model.forwardTokens(s, seq.slice(8), 8))
          expect(s.length).to.equal(seq.length)
          for (let i = 0; i < again.length; i++) {
            expect(maxAbsDiff(again[i], fixture.expected.full_logits[8 + i])).to.be.below(TOL)
          }
          expect(() => model.forwardTokens(s, [1], s.length + 1)).to.throw().with.property('code', ModelErrorCode.BAD_INPUT)
        } finally {
          s.dispose()
        }
        expect(() => model.forwardTokens(s, [1])).to.throw().with.property('code', ModelErrorCode.SESSION_CLOSED)
      })

      it('layers [0,2) then [2,4) as two shards equal the whole model', async () => {
        const source = sourceOf(fixture)
        const first = await LayerRange.load(fixture.config, source, { start: 0, end: 2, embedding: true })
        const second = await LayerRange.load(fixture.config, source, { start: 2, end: 4, head: true })
        const s1 = first.createSession()
        const s2 = second.createSession()
        try {
          expect(first.hasHead).to.equal(false)
          expect(second.hasEmbedding).to.equal(false)
          const seq = fixture.expected.sequence
          const got: number[][] = []
          // prefill 5 positions, then one at a time; hidden states cross as plain arrays
          for (const part of [seq.slice(0, 5), ...seq.slice(5).map(id => [id])]) {
            const x = first.embed(part)
            const h1 = await first.forwardData(s1, await x.data() as Float32Array)
            x.dispose()
            const h2 = await second.forwardData(s2, h1)
            const ht = tf.tensor2d(h2, [part.length, fixture.config.hiddenSize])
            got.push(...await rows(second.logits(ht)))
            ht.dispose()
          }
          for (let i = 0; i < seq.length; i++) {
            expect(maxAbsDiff(got[i], fixture.expected.full_logits[i]), `position ${i}`).to.be.below(TOL)
          }
          // the residual after layer 1 (last position) matches the reference's debug values
          const x = model.embed(seq)
          const s3 = first.createSession()
          const h = first.forward(s3, x)
          const lastRow = (await h.array())[seq.length - 1]
          x.dispose()
          h.dispose()
          s3.dispose()
          expect(maxAbsDiff(lastRow, fixture.expected.debug.last_position_residual_after_each_layer[1])).to.be.below(TOL)
        } finally {
          s1.dispose()
          s2.dispose()
          first.dispose()
          second.dispose()
        }
      })
    })
  }
}

describe('model/qwen3 resources', () => {
  let fixture: Fixture
  let model: LayerRange

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: fixture.config.numLayers, embedding: true, head: true })
  })

  after(() => {
    model?.dispose()
  })

  it('holds no tensors beyond the KV cache over 1000 decode steps', async () => {
    // warm up once (the RoPE table is built on first use)
    const warm = model.createSession()
    await model.nextLogits(warm, [1, 2, 3])
    warm.dispose()
    const baseline = tf.memory().numTensors
    const perSession = 2 * fixture.config.numKvHeads * fixture.config.numLayers
    let session = model.createSession()
    let feed = [17, 402, 3]
    for (let step = 0; step < 1000; step++) {
      if (session.length > 200) {
        session.dispose()
        session = model.createSession()
        feed = [step % 512]
      }
      const logits = await model.nextLogits(session, feed)
      feed = [argmax(logits)]
      // the cache holds 2 tensors per kv head and layer, nothing else accumulates
      expect(tf.memory().numTensors).to.equal(baseline + perSession)
    }
    session.truncate(3)
    expect(session.length).to.equal(3)
    expect(tf.memory().numTensors).to.equal(baseline + perSession)
    session.dispose()
    expect(tf.memory().numTensors).to.equal(baseline)
  })

  it('frees every weight on dispose', async () => {
    const before = tf.memory().numTensors
    const shard = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 1, end: 3, head: true })
    expect(tf.memory().numTensors).to.be.above(before)
    shard.dispose()
    expect(tf.memory().numTensors).to.equal(before)
  })

  it('rejects bad ranges and inputs', async () => {
    await LayerRange.load(fixture.config, sourceOf(fixture), { start: 3, end: 5 }).then(() => { throw new Error('loaded') }, (err) => {
      expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
    })
    const s = model.createSession()
    expect(() => model.embed([512])).to.throw().with.property('code', ModelErrorCode.BAD_INPUT)
    const wrong = tf.zeros([2, 63]) as tf.Tensor2D
    expect(() => model.forward(s, wrong)).to.throw().with.property('code', ModelErrorCode.BAD_INPUT)
    wrong.dispose()
    s.dispose()
  })
})
