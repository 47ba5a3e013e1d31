import { applyRope, causalMask, rmsNorm } from './ops.ts'
import { layerTensorNames } from './plan.ts'
import { tf } from './tf.ts'
import { loadLinear, loadVector } from './weights.ts'
import type { WeightSource } from '../weight-source.ts'
import type { Qwen3Config } from './config.ts'
import type { LayerKv } from './kv-cache.ts'
import type { RopeTable } from './rope.ts'
import type { Tensor, Tensor1D, Tensor2D, Tensor3D } from './tf.ts'

interface LayerWeights {
  inputNorm: Tensor1D
  postNorm: Tensor1D
  qNorm: Tensor1D
  kNorm: Tensor1D
  /** linear weights transposed to [in, out] */
  q: Tensor2D
  k: Tensor2D
  v: Tensor2D
  o: Tensor2D
  gate: Tensor2D
  up: Tensor2D
  down: Tensor2D
}

/** One Qwen3 decoder layer: attention (GQA, q/k norm, RoPE) and SiLU-gated MLP, pre-norm residuals. */
export class DecoderLayer {
  readonly index: number
  private readonly config: Qwen3Config
  private readonly w: LayerWeights

  private constructor (index: number, config: Qwen3Config, w: LayerWeights) {
    this.index = index
    this.config = config
    this.w = w
  }

  static async load (config: Qwen3Config, source: WeightSource, index: number): Promise<DecoderLayer> {
    const { hiddenSize: h, numHeads, numKvHeads, headDim: d, intermediateSize: m } = config
    const n = layerTensorNames(index)
    const loaded: Tensor[] = []
    const track = <T extends Tensor>(t: T): T => {
      loaded.push(t)
      return t
    }
    try {
      const w: LayerWeights = {
        inputNorm: track(await loadVector(source, n.inputNorm, h)),
        q: track(await loadLinear(source, n.q, numHeads * d, h)),
        k: track(await loadLinear(source, n.k, numKvHeads * d, h)),
        v: track(await loadLinear(source, n.v, numKvHeads * d, h)),
        o: track(await loadLinear(source, n.o, h, numHeads * d)),
        qNorm: track(await loadVector(source, n.qNorm, d)),
        kNorm: track(await loadVector(source, n.kNorm, d)),
        postNorm: track(await loadVector(source, n.postNorm, h)),
        gate: track(await loadLinear(source, n.gate, m, h)),
        up: track(await loadLinear(source, n.up, m, h)),
        down: track(await loadLinear(source, n.down, h, m))
      }
      return new DecoderLayer(index, config, w)
    } catch (err) {
      for (const t of loaded) {
        t.dispose()
      }
      throw err
    }
  }

  /**
   * Runs x [T, hidden] at positions [kv length, kv length + T) through the
   * layer, appending this step's keys and values to `kv`. Returns a new
   * tensor; x is left to the caller.
   */
  forward (x: Tensor2D, kv: LayerKv, rope: RopeTable): Tensor2D {
    const { numHeads: nH, numKvHeads: kvH, headDim: d, rmsNormEps: eps } = this.config
    const group = nH / kvH
    const w = this.w
    const t = x.shape[0]
    const past = kv.k == null ? 0 : kv.k.shape[1]
    const [out, keys, values] = tf.tidy(() => {
      const h = rmsNorm(x, w.inputNorm, eps)
      const { cos, sin } = rope.slice(past, t)
      const q = applyRope(rmsNorm(tf.reshape(tf.matMul(h, w.q), [t, nH, d]), w.qNorm, eps), cos, sin)
      const k = applyRope(rmsNorm(tf.reshape(tf.matMul(h, w.k), [t, kvH, d]), w.kNorm, eps), cos, sin)
      const v = tf.reshape(tf.matMul(h, w.v), [t, kvH, d])
      const kNew = tf.transpose(k, [1, 0, 2]) as Tensor3D
      const vNew = tf.transpose(v, [1, 0, 2]) as Tensor3D
      const keys = kv.k == null ? kNew : tf.concat([kv.k, kNew], 1)
      const values = kv.v == null ? vNew : tf.concat([kv.v as Tensor3D, vNew], 1)
      const s = past + t
      // query head j = kv head floor(j / group): [nH, T, d] -> [kvH, group * T, d]
      const qg = tf.reshape(tf.transpose(q, [1, 0, 2]), [kvH, group * t, d])
      let scores: Tensor = tf.mul(tf.matMul(qg, keys, false, true), 1 / Math.sqrt(d))
      if (t > 1) {
        scores = tf.add(tf.reshape(scores, [kvH, group, t, s]), causalMask(t, s))
      }
      const probs = tf.reshape(tf.softmax(scores), [kvH, group * t, s])
      const ctx = tf.reshape(tf.transpose(tf.reshape(tf.matMul(probs, values), [nH, t, d]), [1, 0, 2]), [t, nH * d])
      const x2 = tf.add(x, tf.matMul(ctx, w.o))
      const h2 = rmsNorm(x2, w.postNorm, eps)
      const g = tf.matMul(h2, w.gate)
      const act = tf.mul(tf.mul(g, tf.sigmoid(g)), tf.matMul(h2, w.up))
      const out = tf.add(x2, tf.matMul(act, w.down)) as Tensor2D
      return [out, keys, values] as [Tensor2D, Tensor3D, Tensor3D]
    })
    if (kv.k !== keys) {
      kv.k?.dispose()
    }
    if (kv.v !== values) {
      kv.v?.dispose()
    }
    kv.k = keys
    kv.v = values
    return out
  }

  dispose (): void {
    for (const t of Object.values(this.w)) {
      t.dispose()
    }
  }
}
