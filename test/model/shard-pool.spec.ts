import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { DecoderLayer } from '../../src/model/qwen3/decoder-layer.ts'
import { disposeLayerKv } from '../../src/model/qwen3/kv-cache.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { readLayerShards } from '../../src/model/qwen3/layer-shard.ts'
import { RopeTable } from '../../src/model/qwen3/rope.ts'
import { ShardPool } from '../../src/model/qwen3/shard-pool.ts'
import { tf } from '../../src/model/qwen3/tf.ts'
import { argmax } from '../../src/model/sampling.ts'
import { loadFixture, maxAbsDiff, sourceOf } from './fixtures.ts'
import type { Fixture } from './fixtures.ts'
import type { KvSession, LayerKv } from '../../src/model/qwen3/kv-cache.ts'

const TOL = 1e-4

async function rows (t: tf.Tensor2D): Promise<number[][]> {
  try {
    return await t.array()
  } finally {
    t.dispose()
  }
}

function rowsOf (data: Float32Array, width: number): number[][] {
  const out: number[][] = []
  for (let i = 0; i < data.length; i += width) {
    out.push(Array.from(data.subarray(i, i + width)))
  }
  return out
}

describe('model/qwen3 layer shards', () => {
  let fixture: Fixture

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
  })

  it('the partial sums of two shards equal the whole layer', async () => {
    const { config } = fixture
    const source = sourceOf(fixture)
    const whole = await DecoderLayer.load(config, source, 1)
    const parts = (await readLayerShards(config, source, 1, 2)).map(d => DecoderLayer.fromShard(config, d))
    const rope = new RopeTable(config.headDim, config.ropeTheta, config.maxPositionEmbeddings)
    const kvWhole: LayerKv = { k: null, vT: null }
    const kvParts: LayerKv[] = parts.map(() => ({ k: null, vT: null }))
    try {
      expect(parts.map(p => [p.heads, p.kvHeads, p.inter])).to.deep.equal([[2, 1, 80], [2, 1, 80]])
      for (const t of [5, 1, 1]) {
        const x = tf.randomNormal([t, config.hiddenSize], 0, 1, 'float32', 7 + t) as tf.Tensor2D
        const ref = whole.forward(x, kvWhole, rope)
        const a = parts.map((p, i) => p.attention(x, kvParts[i], rope))
        const x2 = tf.add(x, tf.addN(a)) as tf.Tensor2D
        const m = parts.map(p => p.mlp(x2))
        const got = tf.add(x2, tf.addN(m)) as tf.Tensor2D
        expect(maxAbsDiff(await got.data(), await ref.data())).to.be.below(1e-5)
        tf.dispose([x, ref, ...a, x2, ...m, got])
      }
    } finally {
      whole.dispose()
      parts.forEach(p => { p.dispose() })
      for (const l of [kvWhole, ...kvParts]) {
        disposeLayerKv(l)
      }
      rope.dispose()
    }
  })

  it('a layer with its weights in small column blocks equals the unblocked layer', async () => {
    const { config } = fixture
    const [data] = await readLayerShards(config, sourceOf(fixture), 2, 1)
    const n0 = tf.memory().numTensors
    const whole = DecoderLayer.fromShard(config, data)
    const n1 = tf.memory().numTensors
    // 48 columns per block for 64 inputs: every linear weight is cut into several blocks
    const blocked = DecoderLayer.fromShard(config, data, 64 * 4 * 48)
    // 4 norms + blocks: qkv 256 cols / 48, o 64 / 24, gateUp 320 / 48, down 64 / 19
    expect([n1 - n0, tf.memory().numTensors - n1]).to.deep.equal([8, 4 + 6 + 3 + 7 + 4])
    const rope = new RopeTable(config.headDim, config.ropeTheta, config.maxPositionEmbeddings)
    const kv: LayerKv[] = [{ k: null, vT: null }, { k: null, vT: null }]
    try {
      for (const t of [9, 1]) {
        const x = tf.randomNormal([t, config.hiddenSize], 0, 1, 'float32', 3 + t) as tf.Tensor2D
        const a = whole.forward(x, kv[0], rope)
        const b = blocked.forward(x, kv[1], rope)
        expect(maxAbsDiff(await a.data(), await b.data())).to.be.below(1e-5)
        tf.dispose([x, a, b])
      }
    } finally {
      whole.dispose()
      blocked.dispose()
      kv.forEach(disposeLayerKv)
      rope.dispose()
    }
  })

  it('refuses a shard count that does not divide the heads', async () => {
    await readLayerShards(fixture.config, sourceOf(fixture), 0, 3).then(() => { throw new Error('sharded') }, (err) => {
      expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
    })
    await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 2, workers: 3 }).then(() => { throw new Error('loaded') }, (err) => {
      expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
    })
  })
})

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`model/qwen3 on 2 worker threads (${backend})`, function () {
    this.timeout(60_000)
    let fixture: Fixture
    let single: LayerRange
    let parallel: LayerRange

    before(async () => {
      await selectBackend(backend)
      fixture = await loadFixture('untied-bf16-sharded')
      const range = { start: 0, end: fixture.config.numLayers, embedding: true, head: true }
      single = await LayerRange.load(fixture.config, sourceOf(fixture), range)
      parallel = await LayerRange.load(fixture.config, sourceOf(fixture), { ...range, workers: 2 })
    })

    after(async () => {
      single?.dispose()
      await parallel?.close()
    })

    it('runs on the workers and matches the reference and the single-thread layers', async () => {
      expect(parallel.workers).to.equal(2)
      const seq = fixture.expected.sequence
      const s1 = single.createSession()
      const s2 = parallel.createSession()
      try {
        const ref = await rows(single.forwardTokens(s1, seq))
        const got = await rows(await parallel.forwardTokensAsync(s2, seq))
        for (let i = 0; i < seq.length; i++) {
          expect(maxAbsDiff(got[i], ref[i]), `position ${i}`).to.be.below(1e-5)
          expect(maxAbsDiff(got[i], fixture.expected.full_logits[i]), `position ${i}`).to.be.below(TOL)
        }
        expect(s2.length).to.equal(seq.length)
        expect(s2.bytes).to.equal(s1.bytes)
      } finally {
        s1.dispose()
        s2.dispose()
      }
    })

    it('greedy decoding through the workers\' KV caches gives the reference tokens', async () => {
      const { prompt, tokens, step_logits: stepLogits } = fixture.expected.greedy
      const s = parallel.createSession()
      try {
        const got: number[] = []
        let feed = prompt
        for (let i = 0; i < tokens.length; i++) {
          const logits = await parallel.nextLogits(s, feed)
          expect(maxAbsDiff(logits, stepLogits[i]), `step ${i}`).to.be.below(TOL)
          got.push(argmax(logits))
          feed = [got[got.length - 1]]
        }
        expect(got).to.deep.equal(tokens)
      } finally {
        s.dispose()
      }
    })

    it('hidden states as arrays, rewinds and concurrent sessions stay consistent', async () => {
      const { config } = fixture
      const seq = fixture.expected.sequence
      const x = single.embed(seq)
      const data = await x.data() as Float32Array
      x.dispose()
      const sRef = single.createSession()
      const a = parallel.createSession()
      const b = parallel.createSession()
      try {
        const ref = rowsOf(await single.forwardData(sRef, data), config.hiddenSize)
        // two sessions interleaved on the same workers
        const [ya, yb] = await Promise.all([parallel.forwardData(a, data), parallel.forwardData(b, data.subarray(0, 5 * config.hiddenSize))])
        expect(maxAbsDiff(rowsOf(ya, config.hiddenSize).flat(), ref.flat())).to.be.below(1e-5)
        expect(maxAbsDiff(rowsOf(yb, config.hiddenSize).flat(), ref.slice(0, 5).flat())).to.be.below(1e-5)
        // rewind b to 3 and continue one position at a time
        const rest: number[][] = []
        for (let i = 3; i < seq.length; i++) {
          rest.push(...rowsOf(await parallel.forwardData(b, data.subarray(i * config.hiddenSize, (i + 1) * config.hiddenSize), i), config.hiddenSize))
        }
        expect(maxAbsDiff(rest.flat(), ref.slice(3).flat())).to.be.below(1e-5)
        expect(b.length).to.equal(seq.length)
        // one step at a time per session
        const first = parallel.forwardData(a, data.subarray(0, config.hiddenSize))
        await parallel.forwardData(a, data.subarray(0, config.hiddenSize)).then(() => { throw new Error('ran') }, (err) => {
          expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
        })
        await first
      } finally {
        sRef.dispose()
        a.dispose()
        b.dispose()
      }
    })

    it('the synchronous forward() and foreign sessions are refused', async () => {
      const s = parallel.createSession()
      const foreign = single.createSession()
      const x = tf.zeros([1, fixture.config.hiddenSize]) as tf.Tensor2D
      try {
        expect(() => parallel.forward(s, x)).to.throw().with.property('code', ModelErrorCode.BAD_INPUT)
        await parallel.forwardAsync(foreign, x).then(() => { throw new Error('ran') }, (err) => {
          expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
        })
      } finally {
        x.dispose()
        s.dispose()
        foreign.dispose()
      }
    })
  })
}

describe('model/qwen3 shard pool', function () {
  this.timeout(60_000)

  it('fails calls with ERR_MODEL_WORKER_FAILED once stopped, and passes worker errors on', async () => {
    await selectBackend('wasm')
    const { config } = await loadFixture('untied-f32')
    const pool = await ShardPool.start(config, 1, 'wasm')
    try {
      expect(pool.backend).to.equal('wasm')
      // no layer loaded in slot 0: the worker's own error comes back with its code
      await pool.mlp(0, new Float32Array(config.hiddenSize), 1).then(() => { throw new Error('ran') }, (err) => {
        expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
      })
    } finally {
      await pool.stop()
    }
    await pool.mlp(0, new Float32Array(config.hiddenSize), 1).then(() => { throw new Error('ran') }, (err) => {
      expect(err).to.have.property('code', ModelErrorCode.WORKER_FAILED)
    })
  })

  it('a session disposed mid-step fails that step, not the shard', async () => {
    await selectBackend('wasm')
    const fixture = await loadFixture('untied-f32')
    const model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 4, workers: 2 })
    let s: KvSession | undefined
    try {
      s = model.createSession()
      const step = model.forwardData(s, new Float32Array(3 * fixture.config.hiddenSize).fill(0.1))
      s.dispose()
      await step.then(() => { throw new Error('ran') }, (err) => {
        expect(err).to.have.property('code', ModelErrorCode.SESSION_CLOSED)
      })
      const again = model.createSession()
      const y = await model.forwardData(again, new Float32Array(fixture.config.hiddenSize).fill(0.1))
      expect(y).to.have.length(fixture.config.hiddenSize)
      again.dispose()
    } finally {
      s?.dispose()
      await model.close()
    }
  })
})
