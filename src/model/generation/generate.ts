/**
 * Plain decoding: one token per step from any token model, sampled by the
 * Sampler, with end-of-sequence ids, stop strings (text held back while it
 * may begin one) and max tokens.
 */
import { ModelError, ModelErrorCode } from '../errors.ts'
import { Sampler } from '../sampling.ts'
import type { TokenModel, TokenSession } from './token-model.ts'
import type { SamplingOptions } from '../sampling.ts'

export const FinishReason = {
  EOS: 'eos',
  STOP: 'stop',
  LENGTH: 'length',
  ABORTED: 'aborted'
} as const

export type FinishReasonValue = typeof FinishReason[keyof typeof FinishReason]

export interface GenerateOptions {
  /** default 256 */
  maxNewTokens?: number
  /** generation ends when one of these is sampled (it is not yielded) */
  eosTokenIds?: number[]
  /** generation ends when the decoded text contains one (needs decode); the stop string is not emitted */
  stopStrings?: string[]
  sampling?: SamplingOptions
  /** ids -> text; without it tokens carry empty text */
  decode?(ids: number[]): string
  signal?: AbortSignal
}

export interface GeneratedToken {
  id: number
  /** 0-based index among the generated tokens */
  index: number
  /** new text this token completes; text that may begin a stop string or an unfinished UTF-8 char is held back */
  text: string
}

export interface GenerationResult {
  tokens: number[]
  text: string
  /** text held back and never yielded (completed at the end) */
  tail: string
  finishReason: FinishReasonValue
}

export const DEFAULT_MAX_NEW_TOKENS = 256

/**
 * Streams generated tokens for `prompt`. The model session is created here
 * and disposed when the iterator finishes, throws or is abandoned.
 */
export async function * generate<S extends TokenSession> (model: TokenModel<S>, prompt: number[], options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, GenerationResult, undefined> {
  const maxNewTokens = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `maxNewTokens must be an integer >= 0, got ${maxNewTokens}`)
  }
  if (prompt.length === 0) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'prompt has no tokens')
  }
  const stops = (options.stopStrings ?? []).filter(s => s !== '')
  if (stops.length > 0 && options.decode == null) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'stopStrings need a decode function')
  }
  const eos = new Set(options.eosTokenIds ?? [])
  const sampler = new Sampler(options.sampling)
  const history = prompt.slice()
  const tokens: number[] = []
  const text = new TextStream(options.decode, stops)
  let finishReason: FinishReasonValue = FinishReason.LENGTH
  const session = model.createSession()
  try {
    let feed = prompt
    while (tokens.length < maxNewTokens) {
      if (options.signal?.aborted === true) {
        finishReason = FinishReason.ABORTED
        break
      }
      const logits = await model.nextLogits(session, feed)
      const id = sampler.sample(logits, history)
      if (eos.has(id)) {
        finishReason = FinishReason.EOS
        break
      }
      tokens.push(id)
      history.push(id)
      const { emit, stopped } = text.push(tokens)
      if (stopped) {
        if (emit !== '') {
          yield { id, index: tokens.length - 1, text: emit }
        }
        finishReason = FinishReason.STOP
        break
      }
      yield { id, index: tokens.length - 1, text: emit }
      feed = [id]
    }
  } finally {
    session.dispose()
  }
  const { all, tail } = text.finish(tokens)
  return { tokens, text: all, tail, finishReason }
}

/** Incremental detokenisation with stop-string detection and hold-back. */
export class TextStream {
  private readonly decode?: (ids: number[]) => string
  private readonly stops: string[]
  private emitted: number
  private stoppedAt: number

  constructor (decode: ((ids: number[]) => string) | undefined, stops: string[]) {
    this.decode = decode
    this.stops = stops
    this.emitted = 0
    this.stoppedAt = -1
  }

  push (tokens: number[]): { emit: string, stopped: boolean } {
    if (this.decode == null) {
      return { emit: '', stopped: false }
    }
    const full = this.decode(tokens)
    let stopAt = -1
    for (const s of this.stops) {
      const i = full.indexOf(s, Math.max(0, this.emitted - s.length))
      if (i >= 0 && (stopAt < 0 || i < stopAt)) {
        stopAt = i
      }
    }
    if (stopAt >= 0) {
      this.stoppedAt = stopAt
      const emit = full.slice(this.emitted, Math.max(stopAt, this.emitted))
      this.emitted = Math.max(stopAt, this.emitted)
      return { emit, stopped: true }
    }
    let safe = full.length
    while (safe > this.emitted && full.charCodeAt(safe - 1) === 0xfffd) {
      safe--
    }
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, safe - this.emitted); k > 0; k--) {
        if (full.endsWith(s.slice(0, k)) && full.length - k < safe) {
          safe = full.length - k
          break
        }
      }
    }
    const emit = full.slice(this.emitted, safe)
    this.emitted = Math.max(this.emitted, safe)
    return { emit, stopped: false }
  }

  finish (tokens: number[]): { all: string, tail: string } {
    if (this.decode == null) {
      return { all: '', tail: '' }
    }
    const full = this.decode(tokens)
    const all = this.stoppedAt >= 0 ? full.slice(0, this.stoppedAt) : full
    return { all, tail: all.slice(this.emitted) }
  }
}
