import { expect } from 'aegir/chai'
import { meanLoss, windowCrossEntropy, windowLosses } from '../../src/learning/eval-loss.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { layerTensors } from '../../src/model/qwen3/plan.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { expectCode } from './helpers.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

const f32 = (shape: number[], values: number[]): RawTensor => ({ dtype: 'F32', shape, data: new Uint8Array(Float32Array.from(values).buffer) })

/**
 * vocab 3, hidden 4, one layer whose linear weights are all zero: attention
 * and MLP add nothing, so logits = lm_head . rmsnorm(embedding row).
 * Embeddings [1,1,1,1], [2,0,0,0], [0,0,0,3] normalize to (about)
 * [1,1,1,1], [2,0,0,0], [0,0,0,2]; lm_head rows e0, e1, e3 pick coordinates
 * 0, 1 and 3: logits of token 0 = [1,1,1], token 1 = [2,0,0], token 2 = [0,0,2].
 */
async function handModel (): Promise<LayerRange> {
  const config = parseQwen3Config({
    model_type: 'qwen3',
    vocab_size: 3,
    hidden_size: 4,
    intermediate_size: 4,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    num_key_value_heads: 1,
    head_dim: 4,
    max_position_embeddings: 16,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false
  })
  const tensors = new Map<string, RawTensor>()
  for (const { name, shape } of layerTensors(config, 0)) {
    const n = shape.reduce((a, b) => a * b, 1)
    tensors.set(name, f32(shape, new Array(n).fill(shape.length === 1 ? 1 : 0)))
  }
  tensors.set('model.embed_tokens.weight', f32([3, 4], [1, 1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 3]))
  tensors.set('model.norm.weight', f32([4], [1, 1, 1, 1]))
  tensors.set('lm_head.weight', f32([3, 4], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]))
  return LayerRange.load(config, new MapWeightSource(tensors), { start: 0, end: 1, embedding: true, head: true })
}

describe('learning/eval-loss', () => {
  before(async () => {
    await selectBackend('wasm')
  })

  it('a hand-computed case: mean of ln 3, ln(e^2 + 2), ln(e^2 + 2)', async () => {
    const model = await handModel()
    try {
      // ids 0 -> 1 (logits [1,1,1]: ln 3), 1 -> 2 (logits [2,0,0]: ln(e^2+2) - 0), 2 -> 1 (logits [0,0,2]: ln(e^2+2) - 0)
      const [loss] = await windowLosses(model, [[0, 1, 2, 1]])
      const hand = (Math.log(3) + 2 * Math.log(Math.E ** 2 + 2)) / 3
      // rms_norm_eps shifts the normalized values by ~1e-6
      expect(loss).to.be.closeTo(hand, 1e-5)
      const [two] = await windowLosses(model, [[1, 0]])
      expect(two).to.be.closeTo(Math.log(Math.E ** 2 + 2) - 2, 1e-5)
    } finally {
      model.dispose()
    }
  })

  it('matches the cross-entropy of the reference (float64) logits of the fixture', async () => {
    const fixture = await loadFixture('untied-f32')
    const model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: fixture.config.numLayers, embedding: true, head: true })
    try {
      const seq = fixture.expected.sequence
      const vocab = fixture.config.vocabSize
      const ref = windowCrossEntropy(Float32Array.from(fixture.expected.full_logits.flat()), vocab, seq)
      let manual = 0
      for (let t = 0; t < seq.length - 1; t++) {
        const row = fixture.expected.full_logits[t]
        const max = Math.max(...row)
        manual += max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) - row[seq[t + 1]]
      }
      expect(ref).to.be.closeTo(manual / (seq.length - 1), 1e-6)
      const losses = await windowLosses(model, [seq, seq.slice(0, 5)])
      expect(losses[0]).to.be.closeTo(ref, 1e-4)
      // the first 5 positions of a causal model see the same prefix
      const first5 = windowCrossEntropy(Float32Array.from(fixture.expected.full_logits.slice(0, 5).flat()), vocab, seq.slice(0, 5))
      expect(losses[1]).to.be.closeTo(first5, 1e-4)
      expect(meanLoss(losses)).to.be.closeTo((losses[0] + losses[1]) / 2, 1e-12)
    } finally {
      model.dispose()
    }
  })

  it('refuses windows under 2 tokens, ids outside the vocabulary, partial models', async () => {
    const model = await handModel()
    try {
      let err: any
      await windowLosses(model, [[1]]).catch(e => { err = e })
      expect(err?.code).to.equal(ModelErrorCode.BAD_INPUT)
      expectCode(() => windowCrossEntropy(new Float32Array(6), 3, [0, 3]), ModelErrorCode.BAD_INPUT)
      expectCode(() => meanLoss([]), ModelErrorCode.BAD_INPUT)
    } finally {
      model.dispose()
    }
    const fixture = await loadFixture('untied-f32')
    const part = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 2, embedding: true })
    try {
      let err: any
      await windowLosses(part, [[1, 2]]).catch(e => { err = e })
      expect(err?.code).to.equal(ModelErrorCode.BAD_INPUT)
    } finally {
      part.dispose()
    }
  })
})
