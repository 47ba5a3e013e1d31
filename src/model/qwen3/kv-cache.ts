import { ModelError, ModelErrorCode } from '../errors.ts'
import { tf } from './tf.ts'
import type { Tensor2D } from './tf.ts'

/**
 * One layer's cached keys and values, one tensor per kv head: keys
 * [positions, head_dim] (after k_norm and RoPE), values transposed
 * [head_dim, positions]. Both are the left operand of the attention products,
 * so on tfjs-wasm XNNPACK runs them without repacking the cache each step.
 */
export interface LayerKv {
  k: Tensor2D[] | null
  vT: Tensor2D[] | null
}

/** Positions held in one layer's cache. */
export function kvLength (l: LayerKv): number {
  return l.k?.[0]?.shape[0] ?? 0
}

/** Frees one layer's cache. */
export function disposeLayerKv (l: LayerKv): void {
  tf.dispose(l.k ?? [])
  tf.dispose(l.vT ?? [])
  l.k = null
  l.vT = null
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
  if (l.k == null || l.vT == null || kvLength(l) <= length) {
    return
  }
  if (length === 0) {
    disposeLayerKv(l)
    return
  }
  const k = l.k.map(t => tf.slice(t, [0, 0], [length, t.shape[1]]))
  const vT = l.vT.map(t => tf.slice(t, [0, 0], [t.shape[0], length]))
  disposeLayerKv(l)
  l.k = k
  l.vT = vT
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
    this.layers = Array.from({ length: remote == null ? layerCount : 0 }, () => ({ k: null, vT: null }))
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
      for (const t of [...(l.k ?? []), ...(l.vT ?? [])]) {
        n += t.size * 4
      }
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
      disposeLayerKv(l)
    }
    this.len = 0
  }
}
