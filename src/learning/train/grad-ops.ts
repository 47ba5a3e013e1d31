/**
 * matMuls with a fast gradient on tfjs-wasm, for the units that run under
 * tf.grads (the head, and the tape-based reference backward of a layer).
 * tf.grad of a plain matMul runs the transposed forms (dA = dY B^T,
 * dB = A^T dY), which miss XNNPACK and run ~10x slower there
 * (../shared/notes/tfjs-training.md); these materialise the transposes first
 * so every product of the backward pass is a plain [M, K] x [K, N]. Same
 * values as tf.matMul's gradient up to float rounding.
 */
import { apply } from '../../model/qwen3/decoder-layer.ts'
import { tf } from '../../model/qwen3/tf.ts'
import type { Tensor, Tensor2D } from '../../model/qwen3/tf.ts'

type Save = (t: Tensor[]) => void

/** a @ b with gradients for both operands. */
export function trainMatMul (a: Tensor2D, b: Tensor2D): Tensor2D {
  const f = tf.customGrad(((x: Tensor, w: Tensor, save: Save) => {
    save([x, w])
    return {
      value: tf.matMul(x as Tensor2D, w as Tensor2D),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [sx, sw] = saved as Tensor2D[]
        return [tf.matMul(dy as Tensor2D, tf.transpose(sw)), tf.matMul(tf.transpose(sx), dy as Tensor2D)]
      }
    }
  }) as any)
  return f(a, b) as Tensor2D
}

/**
 * x @ W for a frozen W held in column blocks `w` (decoder-layer.ts
 * linear()), with W^T in column blocks `wT`: the gradient flows to x only
 * (dx = dy @ W^T, no work spent on dW).
 */
export function frozenMatMul (x: Tensor2D, w: Tensor2D[], wT: Tensor2D[]): Tensor2D {
  const f = tf.customGrad(((xi: Tensor, save: Save) => {
    save([xi])
    return {
      value: apply(xi as Tensor2D, w),
      gradFunc: (dy: Tensor) => [apply(dy as Tensor2D, wT)]
    }
  }) as any)
  return f(x) as Tensor2D
}
