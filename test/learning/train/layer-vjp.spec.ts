/**
 * The hand-written VJPs of the layer's pieces (src/learning/train/layer-vjp.ts)
 * against central finite differences of the shared forward ops (ops.ts,
 * layer-math.ts), and a whole layer's backward unit (the VJP over the
 * activations its forward unit kept) against tf.grads of the same layer
 * math (backwardLayerTape), in LoRA and --full mode.
 */
import { expect } from 'aegir/chai'
import { attentionVjp, rmsNormVjp, ropeVjp, swigluVjp } from '../../../src/learning/train/layer-vjp.ts'
import { ProjectionCache } from '../../../src/learning/train/stage.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { Prng } from '../../../src/model/prng.ts'
import { attentionOutput, swiglu } from '../../../src/model/qwen3/layer-math.ts'
import { applyRope, causalMask, rmsNorm } from '../../../src/model/qwen3/ops.ts'
import { RopeTable } from '../../../src/model/qwen3/rope.ts'
import { tf } from '../../../src/model/qwen3/tf.ts'
import { FULL, loraMode, tinyWeights, wholeStage } from './helpers.ts'
import type { LayerDims, LayerLinears } from '../../../src/model/qwen3/layer-math.ts'
import type { Tensor, Tensor1D, Tensor2D } from '../../../src/model/qwen3/tf.ts'

const EPS = 1e-2

function random (shape: number[], seed: number, std = 1): Float32Array {
  const rng = new Prng(seed)
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * std)
}

/**
 * Central differences of L = sum(f(inputs) * r) (summed in float64) for
 * `count` entries of each input, against the analytic gradients `grads`
 * (one per input, the VJP with dy = r).
 */
function checkFd (inputs: Array<{ values: Float32Array, shape: number[] }>, f: (ts: Tensor[]) => Tensor, r: Float32Array, grads: Float32Array[], count: number, what: string): void {
  const loss = (): number => {
    const out = tf.tidy(() => f(inputs.map(i => tf.tensor(i.values, i.shape))))
    const y = out.dataSync()
    out.dispose()
    let s = 0
    for (let i = 0; i < y.length; i++) {
      s += y[i] * r[i]
    }
    return s
  }
  inputs.forEach((input, k) => {
    const g = grads[k]
    const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]))
    // the largest entries and a spread of others
    const picks = [...order.slice(0, count), ...Array.from({ length: count }, (_, j) => order[Math.floor((j + 0.5) * order.length / count)])]
    for (const i of picks) {
      const w = input.values[i]
      input.values[i] = w + EPS
      const up = loss()
      input.values[i] = w - EPS
      const down = loss()
      input.values[i] = w
      const n = (up - down) / (2 * EPS)
      expect(Math.abs(g[i] - n), `${what} input ${k}[${i}]: analytic ${g[i]} vs numeric ${n}`).to.be.at.most(0.02 * Math.abs(n) + 2e-3)
    }
    expect(Math.abs(g[order[0]]), `${what} input ${k}: a gradient that vanishes tests nothing`).to.be.greaterThan(1e-2)
  })
}

function vjp (fn: () => Tensor[]): Float32Array[] {
  const ts = tf.tidy(fn)
  const out = ts.map(t => Float32Array.from(t.dataSync() as Float32Array))
  tf.dispose(ts)
  return out
}

describe('learning/train layer VJPs', function () {
  this.timeout(120_000)

  before(async () => {
    await selectBackend('wasm')
  })

  it('RMSNorm: dx and the weight gradient, over rows and over heads', () => {
    for (const shape of [[5, 16], [4, 3, 8]]) {
      const n = shape[shape.length - 1]
      const x = { values: random(shape, 1), shape }
      const w = { values: Float32Array.from(random([n], 2, 0.3), v => 1 + v), shape: [n] }
      const r = random(shape, 3)
      const grads = vjp(() => {
        const { dx, dw } = rmsNormVjp(tf.tensor(x.values, shape), tf.tensor1d(w.values), 1e-6, tf.tensor(r, shape))
        const frozen = rmsNormVjp(tf.tensor(x.values, shape), tf.tensor1d(w.values), 1e-6, tf.tensor(r, shape), false)
        expect(frozen.dw, 'a frozen weight gets no gradient').to.equal(null)
        return [dx, dw as Tensor1D, frozen.dx]
      })
      expect(grads[2], 'dx does not depend on whether the weight is trained').to.deep.equal(grads[0])
      checkFd([x, w], ([xi, wi]) => rmsNorm(xi, wi as Tensor1D, 1e-6), r, grads.slice(0, 2), 4, `rmsNorm ${shape.join('x')}`)
    }
  })

  it('RoPE (rotate-half) at positions 0..T-1', () => {
    const [t, h, d] = [6, 2, 8]
    const rope = new RopeTable(d, 10000, 64)
    const { cos, sin } = rope.slice(0, t)
    try {
      const x = { values: random([t, h, d], 4), shape: [t, h, d] }
      const r = random([t, h, d], 5)
      const grads = vjp(() => [ropeVjp(tf.tensor(r, x.shape), cos, sin)])
      checkFd([x], ([xi]) => applyRope(xi, cos, sin), r, grads, 4, 'rope')
    } finally {
      tf.dispose([cos, sin])
      rope.dispose()
    }
  })

  it('SwiGLU', () => {
    const shape = [4, 12]
    const g = { values: random(shape, 6, 2), shape }
    const u = { values: random(shape, 7), shape }
    const r = random(shape, 8)
    const grads = vjp(() => {
      const { dg, du } = swigluVjp(tf.tensor2d(g.values, [4, 12]), tf.tensor2d(u.values, [4, 12]), tf.tensor2d(r, [4, 12]))
      return [dg, du]
    })
    checkFd([g, u], ([gi, ui]) => swiglu(gi as Tensor2D, ui as Tensor2D), r, grads, 4, 'swiglu')
  })

  it('grouped-query causal attention: q, k and v', () => {
    // 4 query heads over 2 kv heads (group 2), d = 8, T = 5
    const dims: LayerDims = { heads: 4, kvHeads: 2, headDim: 8, eps: 1e-6 }
    const { heads: nH, kvHeads: kvH, headDim: d } = dims
    const group = nH / kvH
    const t = 5
    const q = { values: random([t, nH, d], 9), shape: [t, nH, d] }
    const k = { values: random([t, kvH, d], 10), shape: [t, kvH, d] }
    const v = { values: random([t, kvH, d], 11), shape: [t, kvH, d] }
    const r = random([t, nH * d], 12)
    const identity: LayerLinears = { qkv: x => x, o: x => x, gateUp: x => x, down: x => x }
    // the layouts of layer-math.ts attentionInputs, then its attentionOutput with an identity o_proj
    const forward = ([qi, ki, vi]: Tensor[]): Tensor => {
      const keys = tf.unstack(tf.transpose(ki, [1, 0, 2])) as Tensor2D[]
      const valuesT = tf.unstack(tf.transpose(vi, [1, 2, 0])) as Tensor2D[]
      const qT = tf.unstack(tf.transpose(tf.reshape(tf.transpose(tf.mul(qi, 1 / Math.sqrt(d)), [1, 0, 2]), [kvH, group * t, d]), [0, 2, 1])) as Tensor2D[]
      return attentionOutput(qT, keys, valuesT, causalMask(t, t), identity, dims)
    }
    const grads = vjp(() => {
      const { dq, dk, dv } = attentionVjp(tf.tensor(q.values, q.shape), tf.tensor(k.values, k.shape), tf.tensor(v.values, v.shape), causalMask(t, t), tf.tensor2d(r, [t, nH * d]), dims)
      return [dq, dk, dv]
    })
    checkFd([q, k, v], forward, r, grads, 6, 'attention')
  })

  describe('a layer\'s backward unit = tf.grads of the shared layer math', () => {
    const SEQ = Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % 512)

    for (const [what, mode] of [['LoRA on all seven projections', loraMode(4)], ['--full', FULL]] as const) {
      it(what, async () => {
        const { config, weights } = await tinyWeights()
        const stage = wholeStage(config, weights, mode, 3)
        const x = stage.embed(SEQ)
        const dy = tf.tensor2d(random(x.shape, 13), x.shape)
        try {
          // move every trainable tensor off its start (LoRA B starts at zero)
          const rng = new Prng(9)
          for (const p of stage.params) {
            for (let i = 0; i < p.values.length; i++) {
              p.values[i] += rng.normal() * 0.05
            }
            p.invalidate()
          }
          for (let l = 0; l < config.numLayers; l++) {
            const cache = new ProjectionCache()
            const y = stage.forwardLayer(l, x, cache)
            y.dispose()
            const run = (backward: () => Tensor2D): { dx: Float32Array, grads: Float32Array[] } => {
              for (const p of stage.params) {
                p.grad.fill(0)
              }
              const dx = backward()
              const out = { dx: Float32Array.from(dx.dataSync() as Float32Array), grads: stage.layerParams(l).map(p => Float32Array.from(p.grad)) }
              dx.dispose()
              return out
            }
            const hand = run(() => stage.backwardLayer(l, x, dy, 1, cache))
            const tape = run(() => stage.backwardLayerTape(l, x, dy, 1))
            const close = (a: Float32Array, b: Float32Array, name: string): void => {
              let diff = 0
              let max = 0
              for (let i = 0; i < a.length; i++) {
                diff = Math.max(diff, Math.abs(a[i] - b[i]))
                max = Math.max(max, Math.abs(b[i]))
              }
              expect(max, `${name}: a gradient that vanishes tests nothing`).to.be.greaterThan(1e-3)
              expect(diff, `layer ${l} ${name}: max |VJP - tape| vs max |tape| ${max}`).to.be.at.most(1e-5 * max)
            }
            close(hand.dx, tape.dx, 'dx')
            stage.layerParams(l).forEach((p, i) => { close(hand.grads[i], tape.grads[i], p.name) })
            cache.dispose()
          }
        } finally {
          tf.dispose([x, dy])
          stage.dispose()
        }
      })
    }
  })
})
