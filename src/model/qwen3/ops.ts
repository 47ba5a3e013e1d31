import { tf } from './tf.ts'
import type { Tensor, Tensor1D } from './tf.ts'

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
