/**
 * A trainable tensor of a training stage: its float32 values (the master
 * copy the optimizer updates in place), the tfjs tensor the math reads
 * (re-uploaded after each update), the gradient accumulated over a step's
 * micro-batches, and the AdamW moments. Plain typed arrays, so a stage's
 * whole training state can be copied, compared byte for byte, or sent to
 * another process.
 */
import { tf } from '../../model/qwen3/tf.ts'
import type { Tensor } from '../../model/qwen3/tf.ts'

export class TrainParam {
  readonly name: string
  readonly shape: number[]
  readonly values: Float32Array
  readonly grad: Float32Array
  readonly m: Float32Array
  readonly v: Float32Array
  /** AdamW's decoupled weight decay applies (matrices yes, norm weights no) */
  readonly decay: boolean
  private current: Tensor | null
  private currentT: Tensor | null

  constructor (name: string, shape: number[], values: Float32Array, decay: boolean) {
    const n = shape.reduce((a, b) => a * b, 1)
    if (values.length !== n) {
      throw new RangeError(`${name}: ${values.length} values for shape [${shape.join(', ')}]`)
    }
    this.name = name
    this.shape = shape
    this.values = values
    this.grad = new Float32Array(n)
    this.m = new Float32Array(n)
    this.v = new Float32Array(n)
    this.decay = decay
    this.current = null
    this.currentT = null
  }

  /** The values as a tfjs tensor (kept outside any tidy; replaced after each update). */
  get tensor (): Tensor {
    if (this.current == null) {
      this.current = tf.keep(tf.tensor(this.values, this.shape))
    }
    return this.current
  }

  /**
   * A matrix's values transposed ([rows, cols] -> [cols, rows]), as a tfjs
   * tensor transposed here in JS once per update (a big tf.transpose is slow
   * on wasm), for the backward's plain dy @ W^T.
   */
  get transposed (): Tensor {
    if (this.currentT == null) {
      if (this.shape.length !== 2) {
        throw new RangeError(`${this.name}: only a matrix has a transpose, shape [${this.shape.join(', ')}]`)
      }
      const [rows, cols] = this.shape
      const a = this.values
      const t = new Float32Array(a.length)
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          t[j * rows + i] = a[i * cols + j]
        }
      }
      this.currentT = tf.keep(tf.tensor(t, [cols, rows]))
    }
    return this.currentT
  }

  /** Adds `g` (this parameter's gradient of one micro-batch) times `scale` to the step's gradient. */
  accumulate (g: Float32Array, scale: number): void {
    const acc = this.grad
    for (let i = 0; i < acc.length; i++) {
      acc[i] += g[i] * scale
    }
  }

  /**
   * Takes a saved state (a checkpoint: values and both moments, copied
   * in); the gradient accumulator is zeroed. The lengths must match.
   */
  restore (values: Float32Array, m: Float32Array, v: Float32Array): void {
    if (values.length !== this.values.length || m.length !== this.m.length || v.length !== this.v.length) {
      throw new RangeError(`${this.name}: a state of ${values.length} values for ${this.values.length}`)
    }
    this.values.set(values)
    this.m.set(m)
    this.v.set(v)
    this.grad.fill(0)
    this.invalidate()
  }

  /** The values changed: the next read uploads them again. */
  invalidate (): void {
    this.current?.dispose()
    this.current = null
    this.currentT?.dispose()
    this.currentT = null
  }

  dispose (): void {
    this.invalidate()
  }
}
