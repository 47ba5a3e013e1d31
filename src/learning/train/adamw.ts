/**
 * AdamW (Loshchilov and Hutter 2019: Adam with decoupled weight decay) with
 * gradient clipping by global norm and a linear warm-up, in plain float32
 * typed-array math in a fixed order (parameters in the order given, elements
 * ascending), so a run is bit-identical for a seed on any backend and the
 * state of a stage can be checked or moved byte for byte.
 *
 * Per step s (1-based), lr_s = lr x min(1, s / warmup); the gradient g is
 * first scaled by min(1, clip / ||g||) (||g|| over every trainable tensor
 * of the job: the caller sums the squares of all stages, sumSquares());
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * w -= lr_s (m / (1 - b1^s) / (sqrt(v / (1 - b2^s)) + eps) + wd w) (wd only where param.decay).
 */
import type { TrainParam } from './param.ts'

export interface AdamWOptions {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** global-norm clip threshold (Infinity: none) */
  clip: number
  /** warm-up steps (0: none) */
  warmup: number
}

export const ADAMW_DEFAULTS: Omit<AdamWOptions, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, clip: 1, warmup: 0 }

/**
 * Sum of the squares of the accumulated gradients (float64, in order),
 * added one by one onto `from`: a pipeline's stages continue the running
 * total of the stages before them, so the global total is the same float
 * as one process's over the same tensors in the same order.
 */
export function sumSquares (params: readonly TrainParam[], from = 0): number {
  let s = from
  for (const p of params) {
    for (const g of p.grad) {
      s += g * g
    }
  }
  return s
}

/** The learning rate of step `step` (1-based) under the warm-up. */
export function stepLr (opts: AdamWOptions, step: number): number {
  return opts.warmup > 0 ? opts.lr * Math.min(1, step / opts.warmup) : opts.lr
}

/**
 * One AdamW update of `params` at step `step` (1-based) from their
 * accumulated gradients, clipped as if their global norm were
 * sqrt(globalSquares); zeroes the gradients. Returns the clip factor applied.
 */
export function adamwStep (params: readonly TrainParam[], opts: AdamWOptions, step: number, globalSquares: number): number {
  const norm = Math.sqrt(globalSquares)
  const clip = Number.isFinite(opts.clip) && norm > opts.clip ? opts.clip / norm : 1
  const lr = stepLr(opts, step)
  const { beta1: b1, beta2: b2, eps } = opts
  const c1 = 1 - Math.pow(b1, step)
  const c2 = 1 - Math.pow(b2, step)
  for (const p of params) {
    const { values: w, grad, m, v } = p
    const wd = p.decay ? opts.weightDecay : 0
    for (let i = 0; i < w.length; i++) {
      const g = grad[i] * clip
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      w[i] = w[i] - lr * ((m[i] / c1) / (Math.sqrt(v[i] / c2) + eps) + wd * w[i])
    }
    grad.fill(0)
    p.invalidate()
  }
  return clip
}
