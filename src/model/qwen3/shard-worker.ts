/**
 * Worker-thread entry of a ShardPool: its own tfjs engine (same backend as
 * the main thread) holding one tensor-parallel shard of each layer, and that
 * shard's KV caches per session. Requests are served one at a time, in order.
 */
import { parentPort } from 'node:worker_threads'
import { selectBackend } from '../backend.ts'
import { ModelError, ModelErrorCode } from '../errors.ts'
import { DecoderLayer } from './decoder-layer.ts'
import { disposeLayerKv, truncateLayerKv } from './kv-cache.ts'
import { RopeTable } from './rope.ts'
import { tf } from './tf.ts'
import type { Qwen3Config } from './config.ts'
import type { LayerKv } from './kv-cache.ts'
import type { ShardReply, ShardRequest } from './shard-protocol.ts'
import type { Tensor2D } from './tf.ts'
import type { MessagePort } from 'node:worker_threads'

class ShardWorker {
  private config: Qwen3Config | null = null
  private rope: RopeTable | null = null
  private readonly layers: DecoderLayer[] = []
  private readonly sessions = new Map<number, LayerKv[]>()

  async handle (req: ShardRequest): Promise<Float32Array | string | undefined> {
    switch (req.op) {
      case 'init': {
        const sel = await selectBackend(req.backend)
        this.config = req.config
        this.rope = new RopeTable(req.config.headDim, req.config.ropeTheta, req.config.maxPositionEmbeddings)
        return sel.name
      }
      case 'load':
        this.layers[req.slot] = DecoderLayer.fromShard(this.ready(), req.data)
        return undefined
      case 'attention': {
        const layer = this.layer(req.slot)
        let kv = this.sessions.get(req.session)
        if (kv == null) {
          kv = this.layers.map(() => ({ k: null, vT: null }))
          this.sessions.set(req.session, kv)
        }
        return this.run(req.x, req.t, x => layer.attention(x, (kv as LayerKv[])[req.slot], this.rope as RopeTable))
      }
      case 'mlp': {
        const layer = this.layer(req.slot)
        return this.run(req.x, req.t, x => layer.mlp(x))
      }
      case 'truncate':
        for (const l of this.sessions.get(req.session) ?? []) {
          truncateLayerKv(l, req.length)
        }
        return undefined
      case 'close':
        this.closeSession(req.session)
        return undefined
      case 'dispose':
        for (const id of [...this.sessions.keys()]) {
          this.closeSession(id)
        }
        for (const l of this.layers) {
          l.dispose()
        }
        this.layers.length = 0
        this.rope?.dispose()
        return undefined
      default:
        throw new ModelError(ModelErrorCode.BAD_INPUT, `unknown shard worker request ${JSON.stringify((req as { op?: unknown }).op)}`)
    }
  }

  private ready (): Qwen3Config {
    if (this.config == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'shard worker used before init')
    }
    return this.config
  }

  private layer (slot: number): DecoderLayer {
    const l = this.layers[slot]
    if (l == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `shard worker holds no layer in slot ${slot}`)
    }
    return l
  }

  private async run (data: Float32Array, t: number, fn: (x: Tensor2D) => Tensor2D): Promise<Float32Array> {
    const x = tf.tensor2d(data, [t, this.ready().hiddenSize])
    try {
      const y = fn(x)
      try {
        return await y.data() as Float32Array
      } finally {
        y.dispose()
      }
    } finally {
      x.dispose()
    }
  }

  private closeSession (id: number): void {
    for (const l of this.sessions.get(id) ?? []) {
      disposeLayerKv(l)
    }
    this.sessions.delete(id)
  }
}

function serve (port: MessagePort): void {
  const worker = new ShardWorker()
  // one request at a time, in arrival order: a truncate posted before a step is applied before it
  let queue: Promise<void> = Promise.resolve()
  port.on('message', (req: ShardRequest) => {
    queue = queue.then(async () => {
      let reply: ShardReply
      try {
        const out = await worker.handle(req)
        if (out instanceof Float32Array) {
          // cloned, not transferred: on some backends data() is the tensor's own storage
          reply = { id: req.id, ok: true, y: out }
        } else {
          reply = { id: req.id, ok: true, backend: out }
        }
      } catch (err: any) {
        reply = { id: req.id, ok: false, code: typeof err?.code === 'string' ? err.code : undefined, message: String(err?.message ?? err) }
      }
      port.postMessage(reply)
    })
  })
}

if (parentPort != null) {
  serve(parentPort)
}
