import { ModelError, ModelErrorCode } from '../errors.ts'
import { DecoderLayer } from './decoder-layer.ts'
import { KvSession } from './kv-cache.ts'
import { headLogits } from './layer-math.ts'
import { assertShardable, readLayerShards } from './layer-shard.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from './plan.ts'
import { RopeTable } from './rope.ts'
import { ShardPool } from './shard-pool.ts'
import { tf } from './tf.ts'
import { loadLinear, loadMatrix, loadVector } from './weights.ts'
import type { BackendPreference } from '../backend.ts'
import type { WeightSource } from '../weight-source.ts'
import type { Qwen3Config } from './config.ts'
import type { Tensor1D, Tensor2D } from './tf.ts'

export interface LayerRangeInit {
  /** first decoder layer held (inclusive) */
  start: number
  /** last decoder layer held (exclusive); start === end holds no layers */
  end: number
  /** also hold embed_tokens (the first stage) */
  embedding?: boolean
  /** also hold the final norm and the output head (the last stage) */
  head?: boolean
  /**
   * Run the decoder layers tensor-parallel on this many worker threads, each
   * with its own tfjs engine on the current backend and 1/workers of every
   * layer's heads and MLP columns (and of the KV cache). 0 (default): on the
   * calling thread. Worker mode needs forwardAsync() / forwardData() /
   * nextLogits(); the synchronous forward() is for the calling thread only.
   * kv heads and intermediate size must divide by it.
   */
  workers?: number
}

/** Decoder layers [start, end) by their model-wide numbers. */
export interface LayerSpan {
  start: number
  end: number
}

/** Which held layers a session runs: slots [first, first + count) of the shard. */
interface SessionLayers {
  first: number
  count: number
}

/**
 * A shard of a Qwen3 model: decoder layers [start, end), optionally the
 * embedding and/or the final norm + head. Weights come only from the
 * WeightSource given to load(); each generation session keeps its own KV
 * cache (createSession()). A session may run any non-empty sub-range of the
 * held layers (createSession({ start, end })), as a Petals server does: its
 * steps run only those layers and it caches keys and values of only those.
 */
export class LayerRange {
  readonly config: Qwen3Config
  readonly start: number
  readonly end: number
  private readonly layers: DecoderLayer[]
  /** set in worker mode; then `layers` is empty and the pool holds them */
  private readonly pool: ShardPool | null
  /** the sessions of this shard and the layers each runs */
  private readonly sessions: WeakMap<KvSession, SessionLayers>
  private readonly busy: WeakSet<KvSession>
  private readonly embedTokens: Tensor2D | null
  private readonly finalNorm: Tensor1D | null
  /** [hidden, vocab], or null when the head reuses embedTokens ([vocab, hidden]) */
  private readonly headWeight: Tensor2D | null
  private readonly tiedHead: Tensor2D | null
  private readonly rope: RopeTable
  private nextSessionId: number
  private disposed: boolean

  private constructor (config: Qwen3Config, init: LayerRangeInit, parts: { layers: DecoderLayer[], pool: ShardPool | null, embedTokens: Tensor2D | null, finalNorm: Tensor1D | null, headWeight: Tensor2D | null, tiedHead: Tensor2D | null }) {
    this.config = config
    this.start = init.start
    this.end = init.end
    this.layers = parts.layers
    this.pool = parts.pool
    this.sessions = new WeakMap()
    this.busy = new WeakSet()
    this.embedTokens = parts.embedTokens
    this.finalNorm = parts.finalNorm
    this.headWeight = parts.headWeight
    this.tiedHead = parts.tiedHead
    this.rope = new RopeTable(config.headDim, config.ropeTheta, config.maxPositionEmbeddings)
    this.nextSessionId = 1
    this.disposed = false
  }

  /** Loads the range's weights from `source` (upcast to float32, linear weights transposed once). */
  static async load (config: Qwen3Config, source: WeightSource, init: LayerRangeInit): Promise<LayerRange> {
    const { start, end } = init
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > config.numLayers) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `layer range [${start}, ${end}) is not inside [0, ${config.numLayers})`)
    }
    const layers: DecoderLayer[] = []
    const extra: Array<{ dispose(): void }> = []
    const { vocabSize: v, hiddenSize: h } = config
    const workers = init.workers ?? 0
    let pool: ShardPool | null = null
    if (workers !== 0) {
      assertShardable(config, workers)
    }
    try {
      let embedTokens: Tensor2D | null = null
      let finalNorm: Tensor1D | null = null
      let headWeight: Tensor2D | null = null
      let tiedHead: Tensor2D | null = null
      if (init.embedding === true) {
        embedTokens = await loadMatrix(source, EMBED_TOKENS, v, h)
        extra.push(embedTokens)
      }
      if (workers !== 0 && end > start) {
        pool = await ShardPool.start(config, workers, tf.getBackend() as BackendPreference)
        await LayerRange.loadOnPool(pool, config, source, init)
      } else {
        for (let i = start; i < end; i++) {
          layers.push(await DecoderLayer.load(config, source, i))
        }
      }
      if (init.head === true) {
        finalNorm = await loadVector(source, FINAL_NORM, h)
        extra.push(finalNorm)
        if (config.tieWordEmbeddings && embedTokens != null) {
          tiedHead = embedTokens
        } else {
          headWeight = await loadLinear(source, config.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD, v, h)
          extra.push(headWeight)
        }
      }
      return new LayerRange(config, init, { layers, pool, embedTokens, finalNorm, headWeight, tiedHead })
    } catch (err) {
      await pool?.stop()
      for (const l of layers) {
        l.dispose()
      }
      for (const t of extra) {
        t.dispose()
      }
      throw err
    }
  }

  /** Cuts each layer into pool.count shards and hands shard i to worker i. */
  private static async loadOnPool (pool: ShardPool, config: Qwen3Config, source: WeightSource, init: LayerRangeInit): Promise<void> {
    for (let i = init.start; i < init.end; i++) {
      await pool.load(i - init.start, await readLayerShards(config, source, i, pool.count))
    }
  }

  get hasEmbedding (): boolean {
    return this.embedTokens != null
  }

  get hasHead (): boolean {
    return this.finalNorm != null
  }

  /** True when this shard alone turns token ids into logits. */
  get isComplete (): boolean {
    return this.hasEmbedding && this.hasHead && this.start === 0 && this.end === this.config.numLayers
  }

  /** Worker threads running the layers (0: the calling thread). */
  get workers (): number {
    return this.pool?.count ?? 0
  }

  /**
   * A new session with its own KV cache, running the held layers `range`
   * (default: all of them). A sub-range must be non-empty and inside
   * [start, end); the session then runs and caches only those layers.
   */
  createSession (range?: LayerSpan): KvSession {
    this.assertOpen()
    const { start, end } = range ?? this
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < this.start || end > this.end || end < start || (end === start && this.end > this.start)) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `layers [${start}, ${end}) are not a non-empty part of the held [${this.start}, ${this.end})`)
    }
    const layers: SessionLayers = { first: start - this.start, count: end - start }
    const id = this.nextSessionId++
    const pool = this.pool
    const { numKvHeads, headDim } = this.config
    const session = pool == null
      ? new KvSession(id, layers.count)
      : new KvSession(id, layers.count, {
        truncate: length => { pool.truncate(id, length) },
        dispose: () => { pool.closeSession(id) },
        bytesPerPosition: layers.count * 2 * numKvHeads * headDim * 4
      })
    this.sessions.set(session, layers)
    return session
  }

  /** The layers [start, end) `session` runs (model-wide numbers). */
  sessionRange (session: KvSession): LayerSpan {
    const layers = this.layersOf(session)
    return { start: this.start + layers.first, end: this.start + layers.first + layers.count }
  }

  /** True when `session` runs every decoder layer of the model (so its output may go through the head). */
  private coversModel (session: KvSession): boolean {
    const { first, count } = this.layersOf(session)
    return this.start + first === 0 && this.start + first + count === this.config.numLayers
  }

  private layersOf (session: KvSession): SessionLayers {
    const layers = this.sessions.get(session)
    if (layers == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'session belongs to another shard')
    }
    return layers
  }

  /** Token ids -> hidden states [T, hidden]. */
  embed (ids: ArrayLike<number>): Tensor2D {
    this.assertOpen()
    if (this.embedTokens == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'this shard does not hold the embedding')
    }
    const arr = Int32Array.from(ids)
    for (const id of arr) {
      if (id < 0 || id >= this.config.vocabSize) {
        throw new ModelError(ModelErrorCode.BAD_INPUT, `token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`)
      }
    }
    if (arr.length === 0) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'no token ids')
    }
    const table = this.embedTokens
    return tf.tidy(() => tf.gather(table, tf.tensor1d(arr, 'int32')))
  }

  /**
   * Runs hidden states [T, hidden] through the session's layers (createSession) at positions
   * [startPos, startPos + T). startPos defaults to the session's cache length;
   * a smaller one rewinds the cache to it first (replay, rejected drafts).
   * Returns a new tensor; `hidden` stays the caller's.
   */
  forward (session: KvSession, hidden: Tensor2D, startPos?: number): Tensor2D {
    if (this.pool != null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'this shard runs its layers on worker threads: use forwardAsync() or forwardData()')
    }
    const pos = this.prepare(session, hidden.shape, startPos)
    const { first, count } = this.layersOf(session)
    let x = hidden
    try {
      for (let i = 0; i < count; i++) {
        const next = this.layers[first + i].forward(x, session.layers[i], this.rope)
        if (x !== hidden) {
          x.dispose()
        }
        x = next
      }
    } catch (err) {
      if (x !== hidden) {
        x.dispose()
      }
      // drop what the layers that did run appended: the session stays usable
      session.truncate(pos)
      throw err
    }
    session.advance(hidden.shape[0])
    return x === hidden ? tf.clone(hidden) : x
  }

  /** forward() that also works in worker mode (then the layers run on the worker threads). */
  async forwardAsync (session: KvSession, hidden: Tensor2D, startPos?: number): Promise<Tensor2D> {
    if (this.pool == null) {
      return this.forward(session, hidden, startPos)
    }
    const pos = this.prepare(session, hidden.shape, startPos)
    const y = await this.forwardOnPool(this.pool, session, await hidden.data() as Float32Array, hidden.shape[0], pos)
    return tf.tensor2d(y, [hidden.shape[0], this.config.hiddenSize])
  }

  /** Checks a step's inputs and rewinds the session to its start position; returns that position. */
  private prepare (session: KvSession, shape: number[], startPos: number | undefined): number {
    this.assertOpen()
    session.assertOpen()
    this.layersOf(session)
    if (this.busy.has(session)) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `session ${session.id} is already running a step`)
    }
    if (shape.length !== 2 || shape[1] !== this.config.hiddenSize || shape[0] < 1) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `hidden states must be [T >= 1, ${this.config.hiddenSize}], got [${shape.join(', ')}]`)
    }
    const pos = startPos ?? session.length
    if (!Number.isSafeInteger(pos) || pos < 0 || pos > session.length) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `startPos ${pos} is not within the session's ${session.length} cached positions`)
    }
    if (pos + shape[0] > this.config.maxPositionEmbeddings) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `positions up to ${pos + shape[0]} exceed max_position_embeddings ${this.config.maxPositionEmbeddings}`)
    }
    if (pos < session.length) {
      session.truncate(pos)
    }
    return pos
  }

  /**
   * The session's layers on the worker pool: per layer x += attention(x),
   * then x += mlp(x). A worker caches keys and values only for the slots a
   * session runs.
   */
  private async forwardOnPool (pool: ShardPool, session: KvSession, hidden: Float32Array, t: number, pos: number): Promise<Float32Array> {
    const { first, count } = this.layersOf(session)
    this.busy.add(session)
    let x = hidden
    try {
      for (let slot = first; slot < first + count; slot++) {
        x = await pool.attention(session.id, slot, x, t)
        x = await pool.mlp(slot, x, t)
      }
    } catch (err) {
      // drop what the layers that did run appended: the session stays usable
      if (!session.disposed) {
        session.truncate(pos)
      }
      throw err
    } finally {
      this.busy.delete(session)
    }
    if (session.disposed) {
      throw new ModelError(ModelErrorCode.SESSION_CLOSED, `session ${session.id} was disposed during the step`)
    }
    session.advance(t)
    return x === hidden ? Float32Array.from(hidden) : x
  }

  /**
   * True when `session`'s output may go through logits(): the shard holds
   * the head and the session runs up to the shard's last layer (a session of
   * an earlier sub-range ends mid-model).
   */
  endsAtHead (session: KvSession): boolean {
    return this.hasHead && this.sessionRange(session).end === this.end
  }

  /** Final norm + head: hidden [T, hidden] -> logits [T, vocab] (after the shard's last layer: see endsAtHead). */
  logits (hidden: Tensor2D): Tensor2D {
    this.assertOpen()
    if (this.finalNorm == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'this shard does not hold the head')
    }
    const norm = this.finalNorm
    const head = this.headWeight
    const tied = this.tiedHead as Tensor2D
    return tf.tidy(() => headLogits(hidden, norm, h => head != null ? tf.matMul(h, head) : tf.matMul(h, tied, false, true), this.config.rmsNormEps))
  }

  /** Runs new token ids through the whole model (isComplete only, a session of every layer); returns logits [T, vocab]. */
  forwardTokens (session: KvSession, ids: ArrayLike<number>, startPos?: number): Tensor2D {
    this.assertWholeModel(session)
    const x = this.embed(ids)
    try {
      const h = this.forward(session, x, startPos)
      try {
        return this.logits(h)
      } finally {
        h.dispose()
      }
    } finally {
      x.dispose()
    }
  }

  /** forwardTokens() that also works in worker mode. */
  async forwardTokensAsync (session: KvSession, ids: ArrayLike<number>, startPos?: number): Promise<Tensor2D> {
    if (this.pool == null) {
      return this.forwardTokens(session, ids, startPos)
    }
    this.assertWholeModel(session)
    const x = this.embed(ids)
    try {
      const h = await this.forwardAsync(session, x, startPos)
      try {
        return this.logits(h)
      } finally {
        h.dispose()
      }
    } finally {
      x.dispose()
    }
  }

  /** The next-token logits after feeding `ids` (the TokenModel contract used by generate()). */
  async nextLogits (session: KvSession, ids: number[]): Promise<Float32Array> {
    const logits = await this.forwardTokensAsync(session, ids)
    try {
      const last = tf.tidy(() => tf.slice(logits, [logits.shape[0] - 1, 0], [1, logits.shape[1]]))
      try {
        return await last.data() as Float32Array
      } finally {
        last.dispose()
      }
    } finally {
      logits.dispose()
    }
  }

  /** forward() on plain arrays, for stages exchanging hidden states over the wire. */
  async forwardData (session: KvSession, hidden: Float32Array, startPos?: number): Promise<Float32Array> {
    const h = this.config.hiddenSize
    if (hidden.length === 0 || hidden.length % h !== 0) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `hidden data length ${hidden.length} is not a positive multiple of ${h}`)
    }
    if (this.pool != null) {
      const t = hidden.length / h
      return this.forwardOnPool(this.pool, session, hidden, t, this.prepare(session, [t, h], startPos))
    }
    const x = tf.tensor2d(hidden, [hidden.length / h, h])
    try {
      const y = this.forward(session, x, startPos)
      try {
        return await y.data() as Float32Array
      } finally {
        y.dispose()
      }
    } finally {
      x.dispose()
    }
  }

  /** dispose(), then waits for the worker threads (if any) to end. */
  async close (): Promise<void> {
    this.dispose()
    await this.pool?.stop()
  }

  /** Frees every weight and ends the worker threads; sessions must be disposed by their owners. */
  dispose (): void {
    if (this.disposed) {
      return
    }
    this.disposed = true
    this.pool?.stop().catch(() => {})
    for (const l of this.layers) {
      l.dispose()
    }
    this.embedTokens?.dispose()
    this.finalNorm?.dispose()
    this.headWeight?.dispose()
    this.rope.dispose()
  }

  /** Logits come only after every layer: a complete shard and a session running all of it. */
  private assertWholeModel (session: KvSession): void {
    if (!this.isComplete) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'forwardTokens needs a shard holding the embedding, every layer and the head')
    }
    if (!this.coversModel(session)) {
      const { start, end } = this.sessionRange(session)
      throw new ModelError(ModelErrorCode.BAD_INPUT, `forwardTokens needs a session of every layer, this one runs [${start}, ${end})`)
    }
  }

  private assertOpen (): void {
    if (this.disposed) {
      throw new ModelError(ModelErrorCode.SESSION_CLOSED, 'layer range was disposed')
    }
  }
}
