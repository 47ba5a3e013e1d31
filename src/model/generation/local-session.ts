/**
 * A complete local model (a LayerRange holding the embedding, every decoder
 * layer and the head) as a token model whose sessions can also verify
 * several positions in one pass and roll back: the target of a local
 * generation and the draft side of speculative decoding run this way.
 */
import { ModelError, ModelErrorCode } from '../errors.ts'
import { tf } from '../qwen3/tf.ts'
import type { StepLogits, TokenModel, VerifyingSession } from './token-model.ts'
import type { KvSession } from '../qwen3/kv-cache.ts'
import type { LayerRange } from '../qwen3/layer-range.ts'

export class LocalTokenSession implements VerifyingSession {
  private readonly model: LayerRange
  private readonly session: KvSession

  constructor (model: LayerRange) {
    if (!model.isComplete) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, 'a local generation session needs a model holding the embedding, every layer and the head')
    }
    this.model = model
    this.session = model.createSession()
  }

  get length (): number {
    return this.session.length
  }

  async forward (ids: number[], options: { allRows?: boolean, signal?: AbortSignal } = {}): Promise<StepLogits> {
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

  async nextLogits (ids: number[], options: { signal?: AbortSignal } = {}): Promise<Float32Array> {
    return (await this.forward(ids, options)).logits
  }

  async truncate (length: number): Promise<void> {
    this.session.truncate(length)
  }

  dispose (): void {
    this.session.dispose()
  }
}

export function createLocalTokenSession (model: LayerRange): LocalTokenSession {
  return new LocalTokenSession(model)
}

/** `model` as the token model of a generation (local or draft): each session is a LocalTokenSession. */
export function localTokenModel (model: LayerRange): TokenModel<LocalTokenSession> {
  return {
    createSession: () => new LocalTokenSession(model),
    nextLogits: async (session, ids) => session.nextLogits(ids)
  }
}
