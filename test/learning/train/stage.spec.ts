/**
 * The training stage and inference compute the same model: the stage's
 * loss of a sequence equals the eval loss of the inference path
 * (LayerRange + windowCrossEntropy) on the same weights, and the weights
 * candidate() hands to a proposal (LoRA merged into W, or the full trained
 * tensors back in the stored layout) give inference the stage's own loss.
 */
import { expect } from 'aegir/chai'
import { windowCrossEntropy } from '../../../src/learning/eval-loss.ts'
import { microBatchGradients, sequenceLoss } from '../../../src/learning/train/micro-batch.ts'
import { TrainStage } from '../../../src/learning/train/stage.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { Prng } from '../../../src/model/prng.ts'
import { LayerRange } from '../../../src/model/qwen3/layer-range.ts'
import { planUnits } from '../../../src/model/qwen3/plan.ts'
import { tf } from '../../../src/model/qwen3/tf.ts'
import { MapWeightSource } from '../../../src/model/weight-source.ts'
import { FULL, loraMode, tinyWeights, wholeStage } from './helpers.ts'
import type { Qwen3Config } from '../../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../../src/model/safetensors/dtypes.ts'

const SEQ = Array.from({ length: 16 }, (_, i) => (i * 53 + 11) % 512)

async function inferenceLoss (config: Qwen3Config, weights: Map<string, Float32Array>): Promise<number> {
  const v = config.vocabSize
  const shaped = new Map<string, RawTensor>()
  for (const { name, shape } of planUnits(config).flatMap(u => u.tensors)) {
    const values = weights.get(name) as Float32Array
    shaped.set(name, { dtype: 'F32', shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) })
  }
  const model = await LayerRange.load(config, new MapWeightSource(shaped), { start: 0, end: config.numLayers, embedding: true, head: true })
  const session = model.createSession()
  try {
    const logits = await model.forwardTokensAsync(session, SEQ)
    const loss = windowCrossEntropy(await logits.data() as Float32Array, v, SEQ)
    logits.dispose()
    return loss
  } finally {
    session.dispose()
    model.dispose()
  }
}

function perturb (stage: TrainStage, pick: (name: string) => boolean, std: number): void {
  const rng = new Prng(21)
  for (const p of stage.params.filter(p => pick(p.name))) {
    for (let i = 0; i < p.values.length; i++) {
      p.values[i] += rng.normal() * std
    }
    p.invalidate()
  }
}

describe('learning/train stage = inference math', function () {
  this.timeout(120_000)
  const env = {} as { config: Qwen3Config, weights: Map<string, Float32Array> }

  before(async () => {
    await selectBackend('wasm')
    Object.assign(env, await tinyWeights())
  })

  it('the stage\'s loss equals the inference eval loss of the same weights', async () => {
    const { config, weights } = env
    const stage = wholeStage(config, weights, loraMode(4))
    try {
      const ref = await inferenceLoss(config, weights)
      expect(Math.abs(sequenceLoss(stage, SEQ) - ref)).to.be.at.most(1e-5 * ref)
    } finally {
      stage.dispose()
    }
  })

  it('a stage of layers [s, e) starts with the adapters a whole-model stage of the same seed has there (pipeline stages)', () => {
    const { config, weights } = env
    const mode = { ...loraMode(4), targets: ['q', 'v', 'down'] as const }
    const whole = wholeStage(config, weights, mode, 9)
    const part = new TrainStage({ config, weights, mode, seed: 9, start: 2, end: 4, embedding: false, head: true })
    try {
      const want = whole.params.filter(p => /layers\.[23]\./.test(p.name))
      expect(part.params.map(p => p.name)).to.deep.equal(want.map(p => p.name))
      expect(want.length).to.equal(2 * 3 * 2)
      for (let i = 0; i < want.length; i++) {
        expect(Buffer.from(part.params[i].values.buffer).equals(Buffer.from(want[i].values.buffer)), want[i].name).to.equal(true)
      }
      // and differ from layer 0's (the stream was advanced, not restarted)
      expect(Buffer.from(part.params[0].values.buffer).equals(Buffer.from(whole.params[0].values.buffer))).to.equal(false)
    } finally {
      whole.dispose()
      part.dispose()
    }
  })

  it('a micro-batch\'s units free every tensor they make (the kept linear products included)', () => {
    const { config, weights } = env
    for (const mode of [loraMode(4), FULL]) {
      const stage = wholeStage(config, weights, mode)
      try {
        microBatchGradients(stage, SEQ, 1)
        const tensors = tf.memory().numTensors
        microBatchGradients(stage, SEQ, 1)
        sequenceLoss(stage, SEQ)
        expect(tf.memory().numTensors).to.equal(tensors)
      } finally {
        stage.dispose()
      }
    }
  })

  for (const [what, mode, pick, std] of [
    ['LoRA (B x A merged into W)', loraMode(4), (n: string) => n.endsWith('lora_b'), 0.2],
    ['--full (trained tensors back in the stored layout)', FULL, (n: string) => !n.includes('norm'), 0.01]
  ] as const) {
    it(`candidate() gives inference the stage's loss: ${what}`, async () => {
      const { config, weights } = env
      const stage = wholeStage(config, weights, mode)
      try {
        const before = sequenceLoss(stage, SEQ)
        perturb(stage, pick, std)
        const trained = sequenceLoss(stage, SEQ)
        expect(Math.abs(trained - before), 'the perturbation changes the loss').to.be.greaterThan(1e-3)
        const candidate = new Map(weights)
        for (const [name, values] of stage.candidate()) {
          candidate.set(name, values)
        }
        const ref = await inferenceLoss(config, candidate)
        expect(Math.abs(trained - ref), `stage ${trained} vs inference ${ref}`).to.be.at.most(1e-4 * ref)
      } finally {
        stage.dispose()
      }
    })
  }
})
