/**
 * What a stage runs and what the pipeline client runs locally, as the
 * subset of LayerRange they use (a LayerRange fits both; a worker-backed
 * shard with the same methods would too).
 */
import { tf } from '../model/qwen3/tf.ts'
import type { Qwen3Config } from '../model/qwen3/config.ts'
import type { Tensor2D } from '../model/qwen3/tf.ts'

/** A stage's per-session KV cache (KvSession fits). */
export interface StageKv {
  readonly length: number
  truncate(length: number): void
  dispose(): void
}

/** Decoder layers [start, end) of one model (LayerRange fits). */
export interface StageLayers<S extends StageKv = StageKv> {
  readonly config: Qwen3Config
  readonly start: number
  readonly end: number
  readonly hasHead: boolean
  /**
   * A session with its own KV cache over the held layers `range` (default:
   * all): a non-empty sub-range of [start, end) runs and caches only those layers
   */
  createSession(range?: { start: number, end: number }): S
  /** hidden [T, hidden] at positions [startPos, startPos + T) -> hidden after the session's last layer */
  forwardData(session: S, hidden: Float32Array, startPos?: number): Promise<Float32Array>
  /** final norm + head (hasHead only) */
  logits(hidden: Tensor2D): Tensor2D
}

/** The client's local part: embedding, final norm and head, no layers needed (LayerRange with start = end). */
export interface LocalEnds {
  readonly config: Qwen3Config
  readonly hasEmbedding: boolean
  readonly hasHead: boolean
  embed(ids: ArrayLike<number>): Tensor2D
  logits(hidden: Tensor2D): Tensor2D
}

/** Logits of rows [from, rows) of `hidden` ([rows, cols] f32) as plain values. */
export async function logitsData (model: { logits(hidden: Tensor2D): Tensor2D }, hidden: Float32Array, rows: number, cols: number, from: number): Promise<Float32Array> {
  const h = tf.tensor2d(hidden.subarray(from * cols, rows * cols), [rows - from, cols])
  try {
    const out = model.logits(h)
    try {
      return await out.data() as Float32Array
    } finally {
      out.dispose()
    }
  } finally {
    h.dispose()
  }
}

/** Token ids -> hidden states [T, hidden] as plain values. */
export async function embedData (model: LocalEnds, ids: ArrayLike<number>): Promise<Float32Array> {
  const x = model.embed(ids)
  try {
    return await x.data() as Float32Array
  } finally {
    x.dispose()
  }
}
