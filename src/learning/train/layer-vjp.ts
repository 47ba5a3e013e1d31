/**
 * Hand-written vector-Jacobian products of the pieces of a Qwen3 decoder
 * layer (model/qwen3/layer-math.ts and ops.ts compute the forward, once for
 * inference and training; these are their derivatives, checked against
 * finite differences in test/learning/train/layer-vjp.spec.ts and against
 * tf.grads of the shared forward in test/learning/train/gradients.spec.ts).
 * Each takes the forward's inputs (saved by the forward unit, or recomputed
 * from what it saved) and the gradient of the output, and returns the
 * gradients of the inputs, with no tape: every product is a plain
 * [M, K] x [K, N] matMul on materialised transposes (the transposed forms
 * miss XNNPACK on tfjs-wasm, ../shared/notes/tfjs-training.md). They
 * make intermediate tensors: call them inside a tf.tidy (the backward unit
 * runs in one; no tidy per piece returning an object, see rope.ts).
 */
import { tf } from '../../model/qwen3/tf.ts'
import type { LayerDims } from '../../model/qwen3/layer-math.ts'
import type { Tensor, Tensor1D, Tensor2D } from '../../model/qwen3/tf.ts'

/**
 * RMSNorm y = w * x * r, r = 1 / sqrt(mean(x^2) + eps) over the last axis
 * (ops.ts rmsNorm): dx = r (g - x^ mean(g x^)) with g = dy w and x^ = x r;
 * with `weightGrad`, also dw = the sum of dy x^ over every row (a frozen
 * weight skips that reduction).
 */
export function rmsNormVjp<T extends Tensor> (x: T, weight: Tensor1D, eps: number, dy: T, weightGrad = true): { dx: T, dw: Tensor1D | null } {
  const n = x.shape[x.rank - 1] as number
  const r = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))
  const xHat = tf.mul(x, r)
  const g = tf.mul(dy, weight)
  const dx = tf.mul(r, tf.sub(g, tf.mul(xHat, tf.mean(tf.mul(g, xHat), -1, true)))) as T
  const dw = weightGrad ? tf.sum(tf.reshape(tf.mul(dy, xHat), [-1, n]), 0) as Tensor1D : null
  return { dx, dw }
}

/**
 * Rotate-half RoPE y = x cos + rot(x) sin, rot([x1, x2]) = [-x2, x1]
 * (ops.ts applyRope): dx = dy cos + rot^T(dy sin), rot^T([z1, z2]) = [z2, -z1].
 */
export function ropeVjp<T extends Tensor> (dy: T, cos: Tensor, sin: Tensor): T {
  const d = dy.shape[dy.rank - 1] as number
  const [z1, z2] = tf.split(tf.mul(dy, sin), [d / 2, d / 2], -1)
  return tf.add(tf.mul(dy, cos), tf.concat([z2, tf.neg(z1)], -1)) as T
}

/**
 * SwiGLU act = silu(g) u = g sigmoid(g) u (layer-math.ts swiglu):
 * dg = dact u s (1 + g (1 - s)), du = dact g s with s = sigmoid(g).
 */
export function swigluVjp (g: Tensor2D, u: Tensor2D, dAct: Tensor2D): { dg: Tensor2D, du: Tensor2D } {
  const s = tf.sigmoid(g)
  const dg = tf.mul(tf.mul(tf.mul(dAct, u), s), tf.add(1, tf.mul(g, tf.sub(1, s)))) as Tensor2D
  const du = tf.mul(dAct, tf.mul(g, s)) as Tensor2D
  return { dg, du }
}

/**
 * Grouped-query causal attention (layer-math.ts attentionOutput before
 * o_proj, ops.ts headAttention): for query head j over kv head
 * i = floor(j / group), P = softmax(q_j k_i^T / sqrt(d) + mask),
 * ctx_j = P v_i. Inputs q [T, heads, d] (after q-norm and RoPE), k
 * [T, kvHeads, d] (after k-norm and RoPE), v [T, kvHeads, d], the context's
 * gradient dctx [T, heads * d] (head-major columns), mask causalMask(T, T)
 * or null. P is recomputed per kv head (memory: no [heads, T, T] is kept
 * between the units); dS = P (dP - rowsum(dP P)), dq = dS k / sqrt(d),
 * dk = dS^T q / sqrt(d), dv = P^T dctx. Returns dq, dk, dv in the inputs' layouts.
 */
export function attentionVjp (q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null, dctx: Tensor2D, dims: LayerDims): { dq: Tensor, dk: Tensor, dv: Tensor } {
  const { heads: nH, kvHeads: kvH, headDim: d } = dims
  const group = nH / kvH
  const t = q.shape[0] as number
  const scale = 1 / Math.sqrt(d)
  // per kv head: its group of query heads as rows [group * T, d] (head-major), like the forward's qT
  const byKv = (a: Tensor): Tensor2D[] => tf.unstack(tf.reshape(tf.transpose(a, [1, 0, 2]), [kvH, group * t, d])) as Tensor2D[]
  const qg = byKv(tf.mul(q, scale))
  const dctxg = byKv(tf.reshape(dctx, [t, nH, d]))
  const kh = tf.unstack(tf.transpose(k, [1, 0, 2])) as Tensor2D[]
  const kTh = tf.unstack(tf.transpose(k, [1, 2, 0])) as Tensor2D[]
  const vTh = tf.unstack(tf.transpose(v, [1, 2, 0])) as Tensor2D[]
  const dq: Tensor2D[] = []
  const dk: Tensor2D[] = []
  const dv: Tensor2D[] = []
  for (let i = 0; i < kvH; i++) {
    let scores: Tensor = tf.matMul(qg[i], kTh[i])
    if (mask != null) {
      scores = tf.reshape(tf.add(tf.reshape(scores, [group, t, t]), mask), [group * t, t])
    }
    const p = tf.softmax(scores) as Tensor2D
    const dp = tf.matMul(dctxg[i], vTh[i])
    const ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))) as Tensor2D
    dq.push(tf.matMul(ds, kh[i]))
    dk.push(tf.matMul(tf.transpose(ds), qg[i]))
    dv.push(tf.matMul(tf.transpose(p), dctxg[i]))
  }
  return {
    dq: tf.mul(tf.transpose(tf.reshape(tf.stack(dq), [nH, t, d]), [1, 0, 2]), scale),
    dk: tf.transpose(tf.stack(dk), [1, 0, 2]),
    dv: tf.transpose(tf.stack(dv), [1, 0, 2])
  }
}
