/**
 * The training math's gradients against central finite differences of the
 * loss, for every kind of trainable tensor: LoRA A and B, norm weights, a
 * full linear weight, the final norm and the LM head under --full. The loss
 * runs through the stage's work units (embed, forwardLayer per layer,
 * headLoss), the gradient through headLoss + backwardLayer per layer.
 */
import { expect } from 'aegir/chai'
import { microBatchGradients, sequenceLoss } from '../../../src/learning/train/micro-batch.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { Prng } from '../../../src/model/prng.ts'
import { FULL, loraMode, tinyWeights, wholeStage } from './helpers.ts'
import type { TrainParam } from '../../../src/learning/train/param.ts'
import type { TrainStage } from '../../../src/learning/train/stage.ts'
import type { Qwen3Config } from '../../../src/model/qwen3/config.ts'

const SEQ = Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % 512)

/** Central differences at the `count` largest-gradient entries of `param`: [analytic, numeric] pairs. */
function check (stage: TrainStage, param: TrainParam, count: number, eps: number): Array<[number, number]> {
  param.grad.fill(0)
  for (const p of stage.params) {
    p.grad.fill(0)
  }
  microBatchGradients(stage, SEQ, 1)
  const grad = Float32Array.from(param.grad)
  const order = Array.from(grad.keys()).sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a])).slice(0, count)
  const out: Array<[number, number]> = []
  for (const i of order) {
    const w = param.values[i]
    param.values[i] = w + eps
    param.invalidate()
    const up = sequenceLoss(stage, SEQ)
    param.values[i] = w - eps
    param.invalidate()
    const down = sequenceLoss(stage, SEQ)
    param.values[i] = w
    param.invalidate()
    out.push([grad[i], (up - down) / (2 * eps)])
  }
  return out
}

function expectClose (pairs: Array<[number, number]>, what: string): void {
  for (const [a, n] of pairs) {
    expect(Math.abs(a), `${what}: a gradient that vanishes tests nothing`).to.be.greaterThan(1e-4)
    expect(Math.abs(a - n), `${what}: analytic ${a} vs numeric ${n}`).to.be.at.most(0.03 * Math.abs(n) + 2e-4)
  }
}

describe('learning/train gradients vs finite differences', function () {
  this.timeout(120_000)
  let config: Qwen3Config
  let weights: Map<string, Float32Array>

  before(async () => {
    await selectBackend('wasm')
    ;({ config, weights } = await tinyWeights())
  })

  it('LoRA A and B of every projection kind', () => {
    const stage = wholeStage(config, weights, loraMode(4), 3)
    try {
      // B starts at zero (so A's gradient does): move it off zero first
      const rng = new Prng(9)
      for (const p of stage.params.filter(p => p.name.endsWith('.lora_b'))) {
        for (let i = 0; i < p.values.length; i++) {
          p.values[i] = rng.normal() * 0.05
        }
        p.invalidate()
      }
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']) {
        for (const part of ['lora_a', 'lora_b']) {
          const p = stage.params.find(p => p.name === `model.layers.1.${proj.endsWith('j') && ['gate_proj', 'up_proj', 'down_proj'].includes(proj) ? 'mlp' : 'self_attn'}.${proj}.weight.${part}`)
          expect(p, `${proj} ${part}`).to.not.equal(undefined)
          expectClose(check(stage, p as TrainParam, 2, 1e-2), p?.name ?? '')
        }
      }
    } finally {
      stage.dispose()
    }
  })

  it('--full: norm weights, a linear weight, the final norm and the LM head', () => {
    const stage = wholeStage(config, weights, FULL)
    try {
      for (const name of [
        'model.layers.0.input_layernorm.weight',
        'model.layers.2.self_attn.q_norm.weight',
        'model.layers.3.post_attention_layernorm.weight',
        'model.layers.2.self_attn.k_proj.weight',
        'model.layers.0.mlp.down_proj.weight',
        'model.norm.weight',
        'lm_head.weight'
      ]) {
        const p = stage.params.find(p => p.name === name)
        expect(p, name).to.not.equal(undefined)
        expectClose(check(stage, p as TrainParam, 2, 1e-2), name)
      }
    } finally {
      stage.dispose()
    }
  })
})
