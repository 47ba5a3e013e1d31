import { ModelError, ModelErrorCode } from '../errors.ts'
import { tf } from './tf.ts'
import type { Tensor2D, Tensor3D } from './tf.ts'

/** Initial table length; the table doubles on demand up to max_position_embeddings. */
export const ROPE_INITIAL_POSITIONS = 1024

/**
 * Precomputed rotate-half RoPE tables: cos/sin [positions, head_dim], where
 * dimension d and d + head_dim/2 share frequency theta^(-2d/head_dim).
 * Angles are computed in float64, then stored as float32.
 */
export class RopeTable {
  readonly headDim: number
  readonly theta: number
  readonly maxPositions: number
  private cos: Tensor2D | null
  private sin: Tensor2D | null
  private length: number

  constructor (headDim: number, theta: number, maxPositions: number) {
    this.headDim = headDim
    this.theta = theta
    this.maxPositions = maxPositions
    this.cos = null
    this.sin = null
    this.length = 0
  }

  /** cos and sin for positions [start, start + count), shaped [count, 1, head_dim] to broadcast over heads. */
  slice (start: number, count: number): { cos: Tensor3D, sin: Tensor3D } {
    const end = start + count
    if (end > this.maxPositions) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `position ${end - 1} is past max_position_embeddings ${this.maxPositions}`)
    }
    this.ensure(end)
    const d = this.headDim
    // one tidy per tensor: a tidy returning a plain object sends tfjs's
    // walkTensorContainer (shared by every tidy) into a Maglev deopt loop
    // (objects and arrays alternating), costing ~1 ms of background compiling per decode step
    const rows = (table: Tensor2D): Tensor3D => tf.tidy(() => tf.reshape(tf.slice(table, [start, 0], [count, d]), [count, 1, d]))
    return { cos: rows(this.cos as Tensor2D), sin: rows(this.sin as Tensor2D) }
  }

  private ensure (positions: number): void {
    if (positions <= this.length) {
      return
    }
    let len = Math.max(this.length * 2, ROPE_INITIAL_POSITIONS)
    while (len < positions) {
      len *= 2
    }
    len = Math.min(len, this.maxPositions)
    const d = this.headDim
    const half = d / 2
    const cos = new Float32Array(len * d)
    const sin = new Float32Array(len * d)
    for (let i = 0; i < half; i++) {
      const invFreq = 1 / Math.pow(this.theta, (2 * i) / d)
      for (let p = 0; p < len; p++) {
        const a = p * invFreq
        const c = Math.cos(a)
        const s = Math.sin(a)
        cos[p * d + i] = c
        cos[p * d + i + half] = c
        sin[p * d + i] = s
        sin[p * d + i + half] = s
      }
    }
    this.dispose()
    // keep: the table may be grown from inside a caller's tf.tidy()
    this.cos = tf.keep(tf.tensor2d(cos, [len, d]))
    this.sin = tf.keep(tf.tensor2d(sin, [len, d]))
    this.length = len
  }

  dispose (): void {
    this.cos?.dispose()
    this.sin?.dispose()
    this.cos = null
    this.sin = null
    this.length = 0
  }
}
