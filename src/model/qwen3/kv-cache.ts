import { ModelError, ModelErrorCode } from '../errors.ts'
import { tf } from './tf.ts'
import type { Tensor3D } from './tf.ts'

/** One layer's cached keys and values, [kv_heads, positions, head_dim] (keys after k_norm and RoPE). */
export interface LayerKv {
  k: Tensor3D | null
  v: Tensor3D | null
}

/**
 * Where a session's cache lives when the layers run on worker threads
 * (ShardPool): the session forwards truncation and disposal there.
 */
export interface RemoteKv {
  truncate(length: number): void
  dispose(): void
  /** float32 bytes one cached position takes over all held layers */
  readonly bytesPerPosition: number
}

/** Drops positions from `length` on in one layer's cache (no-op when it holds fewer). */
export function truncateLayerKv (l: LayerKv, length: number): void {
  if (l.k == null || l.v == null || l.k.shape[1] <= length) {
    return
  }
  if (length === 0) {
    l.k.dispose()
    l.v.dispose()
    l.k = null
    l.v = null
    return
  }
  const [h, , d] = l.k.shape
  const k = tf.slice(l.k, [0, 0, 0], [h, length, d])
  const v = tf.slice(l.v, [0, 0, 0], [h, length, d])
  l.k.dispose()
  l.v.dispose()
  l.k = k
  l.v = v
}

/**
 * A generation session's KV cache on one shard: one LayerKv per held layer.
 * `length` is the number of positions cached; new positions continue from it.
 */
export class KvSession {
  readonly id: number
  readonly layers: LayerKv[]
  private len: number
  private closed: boolean
  private readonly remote?: RemoteKv

  /** With `remote`, the tensors live on worker threads and `layers` stays empty. */
  constructor (id: number, layerCount: number, remote?: RemoteKv) {
    this.id = id
    this.remote = remote
    this.layers = Array.from({ length: remote == null ? layerCount : 0 }, () => ({ k: null, v: null }))
    this.len = 0
    this.closed = false
  }

  get length (): number {
    return this.len
  }

  get disposed (): boolean {
    return this.closed
  }

  /** Bytes the cache holds (float32). */
  get bytes (): number {
    if (this.remote != null) {
      return this.len * this.remote.bytesPerPosition
    }
    let n = 0
    for (const l of this.layers) {
      n += (l.k?.size ?? 0) * 4 + (l.v?.size ?? 0) * 4
    }
    return n
  }

  assertOpen (): void {
    if (this.closed) {
      throw new ModelError(ModelErrorCode.SESSION_CLOSED, `session ${this.id} was disposed`)
    }
  }

  /** Called by the shard after every layer of a step has appended `count` positions. */
  advance (count: number): void {
    this.len += count
  }

  /** Drops positions from `length` on (to rewind, e.g. rejected speculative tokens). */
  truncate (length: number): void {
    this.assertOpen()
    if (!Number.isSafeInteger(length) || length < 0 || length > this.len) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `cannot truncate a ${this.len}-position cache to ${length}`)
    }
    // per layer, so a step that failed half way (some layers appended) is undone too
    for (const l of this.layers) {
      truncateLayerKv(l, length)
    }
    this.remote?.truncate(length)
    this.len = length
  }

  dispose (): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.remote?.dispose()
    for (const l of this.layers) {
      l.k?.dispose()
      l.v?.dispose()
      l.k = null
      l.v = null
    }
    this.len = 0
  }
}
