import { ModelError, ModelErrorCode } from '../errors.ts'
import { DecoderLayer } from './decoder-layer.ts'
import { KvSession } from './kv-cache.ts'
import { rmsNorm } from './ops.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from './plan.ts'
import { RopeTable } from './rope.ts'
import { tf } from './tf.ts'
import { loadLinear, loadMatrix, loadVector } from './weights.ts'
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
}

/**
 * A shard of a Qwen3 model: decoder layers [start, end), optionally the
 * embedding and/or the final norm + head. Weights come only from the
 * WeightSource given to load(); each generation session keeps its own KV
 * cache (createSession()).
 */
export class LayerRange {
  readonly config: Qwen3Config
  readonly start: number
  readonly end: number
  private readonly layers: DecoderLayer[]
  private readonly embedTokens: Tensor2D | null
  private readonly finalNorm: Tensor1D | null
  /** [hidden, vocab], or null when the head reuses embedTokens ([vocab, hidden]) */
  private readonly headWeight: Tensor2D | null
  private readonly tiedHead: Tensor2D | null
  private readonly rope: RopeTable
  private nextSessionId: number
  private disposed: boolean

  private constructor (config: Qwen3Config, init: LayerRangeInit, parts: { layers: DecoderLayer[], embedTokens: Tensor2D | null, finalNorm: Tensor1D | null, headWeight: Tensor2D | null, tiedHead: Tensor2D | null }) {
    this.config = config
    this.start = init.start
    this.end = init.end
    this.layers = parts.layers
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
    try {
      let embedTokens: Tensor2D | null = null
      let finalNorm: Tensor1D | null = null
      let headWeight: Tensor2D | null = null
      let tiedHead: Tensor2D | null = null
      if (init.embedding === true) {
        embedTokens = await loadMatrix(source, EMBED_TOKENS, v, h)
        extra.push(embedTokens)
      }
      for (let i = start; i < end; i++) {
        layers.push(await DecoderLayer.load(config, source, i))
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
      return new LayerRange(config, init, { layers, embedTokens, finalNorm, headWeight, tiedHead })
    } catch (err) {
      for (const l of layers) {
        l.dispose()
      }
      for (const t of extra) {
        t.dispose()
      }
      throw err
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

  createSession (): KvSession {
    this.assertOpen()
    return new KvSession(this.nextSessionId++, this.layers.length)
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
   * Runs hidden states [T, hidden] through layers [start, end) at positions
   * [startPos, startPos + T). startPos defaults to the session's cache length;
   * a smaller one rewinds the cache to it first (replay, rejected drafts).
   * Returns a new tensor; `hidden` stays the caller's.
   */
  forward (session: KvSession, hidden: Tensor2D, startPos?: number): Tensor2D {
    this.assertOpen()
    session.assertOpen()
    if (session.layers.length !== this.layers.length) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'session belongs to another shard')
    }
    if (hidden.rank !== 2 || hidden.shape[1] !== this.config.hiddenSize || hidden.shape[0] < 1) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `hidden states must be [T >= 1, ${this.config.hiddenSize}], got [${hidden.shape.join(', ')}]`)
    }
    const pos = startPos ?? session.length
    if (!Number.isSafeInteger(pos) || pos < 0 || pos > session.length) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `startPos ${pos} is not within the session's ${session.length} cached positions`)
    }
    if (pos + hidden.shape[0] > this.config.maxPositionEmbeddings) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `positions up to ${pos + hidden.shape[0]} exceed max_position_embeddings ${this.config.maxPositionEmbeddings}`)
    }
    if (pos < session.length) {
      session.truncate(pos)
    }
    let x = hidden
    try {
      for (let i = 0; i < this.layers.length; i++) {
        const next = this.layers[i].forward(x, session.layers[i], this.rope)
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

  /** Final norm + head: hidden [T, hidden] -> logits [T, vocab]. */
  logits (hidden: Tensor2D): Tensor2D {
    this.assertOpen()
    if (this.finalNorm == null) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'this shard does not hold the head')
    }
    const norm = this.finalNorm
    return tf.tidy(() => {
      const h = rmsNorm(hidden, norm, this.config.rmsNormEps)
      return this.headWeight != null
        ? tf.matMul(h, this.headWeight)
        : tf.matMul(h, this.tiedHead as Tensor2D, false, true)
    })
  }

  /** Runs new token ids through the whole model (isComplete only); returns logits [T, vocab]. */
  forwardTokens (session: KvSession, ids: ArrayLike<number>, startPos?: number): Tensor2D {
    if (!this.isComplete) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'forwardTokens needs a shard holding the embedding, every layer and the head')
    }
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

  /** The next-token logits after feeding `ids` (the TokenModel contract used by generate()). */
  async nextLogits (session: KvSession, ids: number[]): Promise<Float32Array> {
    const logits = this.forwardTokens(session, ids)
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

  /** Frees every weight; sessions must be disposed by their owners. */
  dispose (): void {
    if (this.disposed) {
      return
    }
    this.disposed = true
    for (const l of this.layers) {
      l.dispose()
    }
    this.embedTokens?.dispose()
    this.finalNorm?.dispose()
    this.headWeight?.dispose()
    this.rope.dispose()
  }

  private assertOpen (): void {
    if (this.disposed) {
      throw new ModelError(ModelErrorCode.SESSION_CLOSED, 'layer range was disposed')
    }
  }
}
