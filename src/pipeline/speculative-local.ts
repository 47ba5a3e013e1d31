/**
 * A complete local model (a LayerRange holding the embedding, every decoder
 * layer and the head) as a SpeculativeSession: the draft side of
 * speculative decoding runs on the client this way.
 */
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { tf } from '../model/qwen3/tf.ts'
import type { SpeculativeSession } from './speculative.ts'
import type { KvSession } from '../model/qwen3/kv-cache.ts'
import type { LayerRange } from '../model/qwen3/layer-range.ts'

export class LocalSpeculativeSession implements SpeculativeSession {
  private readonly model: LayerRange
  private readonly session: KvSession

  constructor (model: LayerRange) {
    if (!model.isComplete) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'a local speculative session needs a model holding the embedding, every layer and the head')
    }
    this.model = model
    this.session = model.createSession()
  }

  get length (): number {
    return this.session.length
  }

  async forward (ids: number[], options: { allRows?: boolean, signal?: AbortSignal } = {}): Promise<{ logits: Float32Array, rows: number, vocab: number }> {
    options.signal?.throwIfAborted()
    const vocab = this.model.config.vocabSize
    const all = await this.model.forwardTokensAsync(this.session, ids)
    try {
      const rows = options.allRows === true ? ids.length : 1
      const part = rows === ids.length ? all : tf.slice(all, [ids.length - 1, 0], [1, vocab])
      try {
        return { logits: await part.data() as Float32Array, rows, vocab }
      } finally {
        if (part !== all) {
          part.dispose()
        }
      }
    } finally {
      all.dispose()
    }
  }

  async truncate (length: number): Promise<void> {
    this.session.truncate(length)
  }

  dispose (): void {
    this.session.dispose()
  }
}

export function createLocalSpeculativeSession (model: LayerRange): LocalSpeculativeSession {
  return new LocalSpeculativeSession(model)
}
