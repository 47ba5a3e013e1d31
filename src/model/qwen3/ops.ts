import { tf } from './tf.ts'
import type { Tensor, Tensor1D, Tensor2D } from './tf.ts'

/** RMSNorm over the last axis: w * x / sqrt(mean(x^2) + eps) (plain weight, eps inside the sqrt). */
export function rmsNorm<T extends Tensor> (x: T, weight: Tensor1D, eps: number): T {
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true)
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight) as T
  })
}

/** Rotate-half RoPE on x [T, heads, head_dim] with cos/sin [T, 1, head_dim]. */
export function applyRope<T extends Tensor> (x: T, cos: Tensor, sin: Tensor): T {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1]
    const [x1, x2] = tf.split(x, [d / 2, d / 2], -1)
    const rotated = tf.concat([tf.neg(x2), x1], -1)
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as T
  })
}

/** Additive causal mask [T, S] for T queries at positions S-T .. S-1 over S keys. */
export function causalMask (queries: number, keys: number): Tensor {
  const past = keys - queries
  const m = new Float32Array(queries * keys)
  for (let t = 0; t < queries; t++) {
    for (let s = past + t + 1; s < keys; s++) {
      m[t * keys + s] = -1e30
    }
  }
  return tf.tensor2d(m, [queries, keys])
}

/**
 * Grouped-query attention over the cache: qg [kvH, group * T, d] (query head
 * j = kv head floor(j / group)), keys and values [kvH, S, d], the T queries at
 * positions S-T .. S-1. Returns [kvH, group * T, d].
 * One batched matMul per product (tfjs-wasm runs batched matMuls with its
 * scalar fallback kernel).
 */
export function batchedAttention (qg: Tensor, keys: Tensor, values: Tensor, group: number, t: number): Tensor {
  return tf.tidy(() => {
    const [kvH, , d] = keys.shape
    const s = keys.shape[1]
    let scores: Tensor = tf.matMul(tf.mul(qg, 1 / Math.sqrt(d)), keys, false, true)
    if (t > 1) {
      scores = tf.add(tf.reshape(scores, [kvH, group, t, s]), causalMask(t, s))
    }
    return tf.matMul(tf.reshape(tf.softmax(scores), [kvH, group * t, s]), values)
  })
}

/**
 * batchedAttention() as 2-D matMuls per kv head, with K transposed to
 * [d, S] first: on tfjs-wasm every product then runs on XNNPACK's GEMM.
 */
export function perHeadAttention (qg: Tensor, keys: Tensor, values: Tensor, group: number, t: number): Tensor {
  return tf.tidy(() => {
    const [kvH, s, d] = keys.shape
    const q = tf.unstack(tf.mul(qg, 1 / Math.sqrt(d)))
    const kT = tf.unstack(tf.transpose(keys, [0, 2, 1]))
    const v = tf.unstack(values)
    const mask = t > 1 ? causalMask(t, s) : null
    const out: Tensor[] = []
    for (let h = 0; h < kvH; h++) {
      let scores: Tensor = tf.matMul(q[h] as Tensor2D, kT[h] as Tensor2D)
      if (mask != null) {
        scores = tf.reshape(tf.add(tf.reshape(scores, [group, t, s]), mask), [group * t, s])
      }
      out.push(tf.matMul(tf.softmax(scores) as Tensor2D, v[h] as Tensor2D))
    }
    return tf.stack(out)
  })
}
