import { Worker } from 'node:worker_threads'
import { ModelError, ModelErrorCode } from '../errors.ts'
import type { BackendPreference } from '../backend.ts'
import type { ModelErrorCodeValue } from '../errors.ts'
import type { Qwen3Config } from './config.ts'
import type { LayerShardData } from './layer-shard.ts'
import type { ShardReply, ShardRequest } from './shard-protocol.ts'

/** Distributive Omit over the request union (keeps each variant's own fields). */
type RequestBody = ShardRequest extends infer R ? R extends ShardRequest ? Omit<R, 'id'> : never : never

interface Pending {
  resolve(reply: ShardReply & { ok: true }): void
  reject(err: Error): void
}

/** A view into a larger buffer as its own array: postMessage clones a view's whole buffer. */
function compact (x: Float32Array): Float32Array {
  return x.byteOffset === 0 && x.byteLength === x.buffer.byteLength ? x : x.slice()
}

const WORKER_URL = new URL('./shard-worker.ts', import.meta.url)

class ShardThread {
  readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failure: ModelError | null = null

  constructor () {
    this.worker = new Worker(WORKER_URL)
    this.worker.unref()
    this.worker.on('message', (reply: ShardReply) => {
      const p = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      if (this.pending.size === 0) {
        this.worker.unref()
      }
      if (p == null) {
        return
      }
      if (reply.ok) {
        p.resolve(reply)
      } else {
        const known = Object.values(ModelErrorCode).includes(reply.code as ModelErrorCodeValue)
        p.reject(new ModelError(known ? reply.code as ModelErrorCodeValue : ModelErrorCode.WORKER_FAILED, reply.message))
      }
    })
    this.worker.on('error', err => {
      this.fail(new ModelError(ModelErrorCode.WORKER_FAILED, `shard worker failed: ${err.message}`, {}, { cause: err }))
    })
    this.worker.on('exit', code => {
      this.fail(new ModelError(ModelErrorCode.WORKER_FAILED, `shard worker exited with code ${code}`))
    })
  }

  async call (body: RequestBody): Promise<ShardReply & { ok: true }> {
    if (this.failure != null) {
      throw this.failure
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) {
        // keep the process alive only while a request is in flight
        this.worker.ref()
      }
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ ...body, id })
    })
  }

  /** Fire and forget; ordered before any later call. A failure shows on the next call. */
  post (body: RequestBody): void {
    if (this.failure == null) {
      this.call(body).catch(() => {})
    }
  }

  private fail (err: ModelError): void {
    this.failure ??= err
    for (const p of this.pending.values()) {
      p.reject(this.failure)
    }
    this.pending.clear()
  }
}

/**
 * Tensor parallelism over worker threads: each worker runs its own tfjs
 * engine (the same kernels as the main thread) and holds one shard of every
 * layer (a subset of the heads and MLP columns, LayerShardData) plus that
 * shard's KV caches. Per layer the main thread sends the hidden states to
 * every worker twice (attention, then MLP) and adds up their partial sums:
 * only activations cross threads, so all cores stream their own weights.
 */
export class ShardPool {
  readonly count: number
  /** the backend the workers run */
  readonly backend: string
  private readonly threads: ShardThread[]
  private stopped: boolean
  private stopping: Promise<void> | undefined

  private constructor (threads: ShardThread[], backend: string) {
    this.count = threads.length
    this.threads = threads
    this.backend = backend
    this.stopped = false
  }

  /** Starts `count` workers on `backend` (the main thread's, normally). */
  static async start (config: Qwen3Config, count: number, backend: BackendPreference): Promise<ShardPool> {
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `worker count must be a positive integer, got ${count}`)
    }
    const threads = Array.from({ length: count }, () => new ShardThread())
    try {
      const replies = await Promise.all(threads.map(async t => t.call({ op: 'init', backend, config })))
      return new ShardPool(threads, replies[0].backend ?? backend)
    } catch (err) {
      await Promise.all(threads.map(async t => t.worker.terminate()))
      throw err
    }
  }

  /** Sends shard i of a layer to worker i (shards.length must equal count). */
  async load (slot: number, shards: LayerShardData[]): Promise<void> {
    this.assertRunning()
    if (shards.length !== this.count) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `${shards.length} shards for ${this.count} workers`)
    }
    await Promise.all(shards.map(async (data, i) => this.threads[i].call({ op: 'load', slot, data })))
  }

  /** x [t, hidden] -> x + attention(x) of layer `slot`, appending to the session's caches. */
  async attention (session: number, slot: number, x: Float32Array, t: number): Promise<Float32Array> {
    this.assertRunning()
    x = compact(x)
    return this.reduce(x, await Promise.all(this.threads.map(async th => th.call({ op: 'attention', session, slot, t, x }))))
  }

  /** x2 [t, hidden] -> x2 + mlp(x2) of layer `slot`. */
  async mlp (slot: number, x: Float32Array, t: number): Promise<Float32Array> {
    this.assertRunning()
    x = compact(x)
    return this.reduce(x, await Promise.all(this.threads.map(async th => th.call({ op: 'mlp', slot, t, x }))))
  }

  truncate (session: number, length: number): void {
    for (const th of this.threads) {
      th.post({ op: 'truncate', session, length })
    }
  }

  closeSession (session: number): void {
    for (const th of this.threads) {
      th.post({ op: 'close', session })
    }
  }

  /** Frees the workers' tensors and ends the threads. */
  async stop (): Promise<void> {
    this.stopped = true
    this.stopping ??= Promise.all(this.threads.map(async th => {
      await th.call({ op: 'dispose' }).catch(() => {})
      await th.worker.terminate()
    })).then(() => {})
    await this.stopping
  }

  private assertRunning (): void {
    if (this.stopped) {
      throw new ModelError(ModelErrorCode.WORKER_FAILED, 'shard pool was stopped')
    }
  }

  /** residual + the sum of the workers' partial outputs */
  private reduce (x: Float32Array, replies: Array<{ y?: Float32Array }>): Float32Array {
    const out = Float32Array.from(x)
    for (const r of replies) {
      const y = r.y as Float32Array
      if (y.length !== out.length) {
        throw new ModelError(ModelErrorCode.WORKER_FAILED, `shard worker returned ${y.length} values, expected ${out.length}`)
      }
      for (let i = 0; i < out.length; i++) {
        out[i] += y[i]
      }
    }
    return out
  }
}
