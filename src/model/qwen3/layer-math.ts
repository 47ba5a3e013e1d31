/**
 * The math of one Qwen3 decoder layer, written once for inference
 * (DecoderLayer, with a KV cache) and training (src/learning/train/, whole
 * sequences under tf.grads): the projections come in as functions so the
 * caller chooses how a linear runs (inference: x @ W in column blocks;
 * training: the frozen or trainable W plus LoRA adapters, through a matMul
 * whose gradient avoids the slow transposed forms), and `mm` is the
 * matMul of the attention products (tf.matMul for inference).
 */
import { applyRope, headAttention, rmsNorm } from './ops.ts'
import { tf } from './tf.ts'
import type { Tensor, Tensor1D, Tensor2D, Tensor3D } from './tf.ts'

/** The norm weights of a layer. */
export interface LayerNorms {
  inputNorm: Tensor1D
  postNorm: Tensor1D
  qNorm: Tensor1D
  kNorm: Tensor1D
}

/** x [T, in] -> x @ W [T, out] for each projection group (q/k/v and gate/up fused along out). */
export interface LayerLinears {
  qkv(x: Tensor2D): Tensor2D
  o(x: Tensor2D): Tensor2D
  gateUp(x: Tensor2D): Tensor2D
  down(x: Tensor2D): Tensor2D
}

export interface LayerDims {
  heads: number
  kvHeads: number
  headDim: number
  eps: number
}

export type MatMul = (a: Tensor2D, b: Tensor2D) => Tensor2D

const plainMatMul: MatMul = (a, b) => tf.matMul(a, b)

/**
 * Attention inputs of x [T, hidden]: the queries after q-norm and RoPE,
 * scaled by 1/sqrt(d), per kv head as qT [d, group * T]; the new keys per kv
 * head [T, d] (k-norm, RoPE) and values per kv head as vT [d, T].
 */
export function attentionInputs (x: Tensor2D, norms: LayerNorms, lin: LayerLinears, dims: LayerDims, cos: Tensor3D, sin: Tensor3D): { qT: Tensor2D[], keys: Tensor2D[], valuesT: Tensor2D[] } {
  const { heads: nH, kvHeads: kvH, headDim: d, eps } = dims
  const group = nH / kvH
  const t = x.shape[0]
  const h = rmsNorm(x, norms.inputNorm, eps)
  const [qf, kf, vf] = tf.split(lin.qkv(h), [nH * d, kvH * d, kvH * d], 1)
  const q = applyRope(rmsNorm(tf.reshape(qf, [t, nH, d]), norms.qNorm, eps), cos, sin)
  const k = applyRope(rmsNorm(tf.reshape(kf, [t, kvH, d]), norms.kNorm, eps), cos, sin)
  // per kv head: keys [t, d] appended below the cache, values [d, t] to its right
  const keys = tf.unstack(tf.transpose(k, [1, 0, 2])) as Tensor2D[]
  const valuesT = tf.unstack(tf.transpose(tf.reshape(vf, [t, kvH, d]), [1, 2, 0])) as Tensor2D[]
  // query head j uses kv head floor(j / group): per kv head qT [d, group * t]
  const qT = tf.unstack(tf.transpose(tf.reshape(tf.transpose(tf.mul(q, 1 / Math.sqrt(d)), [1, 0, 2]), [kvH, group * t, d]), [0, 2, 1])) as Tensor2D[]
  return { qT, keys, valuesT }
}

/**
 * o_proj of the attention of the T new queries (per kv head qT) over all
 * keys [S, d] / valuesT [d, S] per kv head (cache + new), [T, hidden];
 * `mask` is causalMask(T, S) or null for T = 1.
 */
export function attentionOutput (qT: Tensor2D[], keys: Tensor2D[], valuesT: Tensor2D[], mask: Tensor | null, lin: LayerLinears, dims: LayerDims, mm: MatMul = plainMatMul): Tensor2D {
  const { heads: nH, kvHeads: kvH, headDim: d } = dims
  const group = nH / kvH
  const t = qT[0].shape[1] / group
  const heads = tf.stack(qT.map((qh, i) => headAttention(qh, keys[i], valuesT[i], group, t, mask, mm)))
  const ctx = tf.reshape(tf.transpose(tf.reshape(heads, [nH, t, d]), [1, 0, 2]), [t, nH * d]) as Tensor2D
  return lin.o(ctx)
}

/** down(silu(gate(h)) * up(h)) with h = post_norm(x2), [T, hidden], without the residual. */
export function mlpOutput (x2: Tensor2D, norms: LayerNorms, lin: LayerLinears, eps: number): Tensor2D {
  const h2 = rmsNorm(x2, norms.postNorm, eps)
  const [g, u] = tf.split(lin.gateUp(h2), 2, 1) as [Tensor2D, Tensor2D]
  return lin.down(swiglu(g, u))
}

/** The MLP's gated activation silu(g) * u = g sigmoid(g) u. */
export function swiglu (g: Tensor2D, u: Tensor2D): Tensor2D {
  return tf.mul(tf.mul(g, tf.sigmoid(g)), u) as Tensor2D
}

/** Logits [T, vocab] = final_norm(hidden) through `head` (x [T, hidden] -> [T, vocab]). */
export function headLogits (hidden: Tensor2D, finalNorm: Tensor1D, head: (x: Tensor2D) => Tensor2D, eps: number): Tensor2D {
  return head(rmsNorm(hidden, finalNorm, eps))
}
