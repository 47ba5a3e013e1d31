/**
 * A `generate` request (IPC params) turned into what the runner needs: the
 * prompt ids (text, chat or ids), the end-of-sequence set, the sampling
 * options and the speculation asked for. Local and mesh generation both
 * resolve requests here, so they accept and refuse exactly the same params.
 */
import { ModelError, ModelErrorCode } from '../errors.ts'
import { SPECULATIVE_DEFAULTS } from './speculative.ts'
import type { GenerateParams } from '../../protocols/ipc.ts'
import type { SamplingOptions } from '../sampling.ts'
import type { ChatMessage, ChatTokenizer } from '../tokenizer.ts'

export interface Speculation {
  /** the draft model (id or prefix) */
  draft: string
  /** draft tokens per round to start with */
  k: number
}

/** The prompt of a request and the tokenizer that goes with it (null: a token-id-only model). */
export interface ResolvedPrompt {
  prompt: number[]
  tokenizer: ChatTokenizer | null
}

/** null when the request asks for no speculation; throws on `speculate` without `draft` or a bad k. */
export function speculationOf (params: { draft?: string, speculate?: number }): Speculation | null {
  if (params.draft == null) {
    if (params.speculate != null) {
      throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'speculate needs a draft model (--draft MODEL)')
    }
    return null
  }
  const k = params.speculate ?? SPECULATIVE_DEFAULTS.k
  if (!Number.isSafeInteger(k) || k < 1 || k > 64) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `speculate must be an integer in [1, 64] (got ${String(k)})`)
  }
  return { draft: params.draft, k }
}

/** The tokens that end a chat turn (Qwen3's end of message and end of text), where the tokenizer has them. */
export const END_OF_TURN_TOKENS = ['<|im_end|>', '<|endoftext|>'] as const

/** Throws unless the request gives exactly one of prompt, chat and promptIds (and enableThinking only with chat). */
export function checkPromptParams (params: Pick<GenerateParams, 'prompt' | 'chat' | 'promptIds' | 'enableThinking'>): void {
  const given = [params.prompt, params.chat, params.promptIds].filter(v => v != null).length
  if (given !== 1) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'give exactly one of prompt, chat and promptIds')
  }
  if (params.enableThinking != null && params.chat == null) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'enableThinking applies to chat only (it is a switch of the chat template)')
  }
}

/**
 * The prompt ids of a request: `promptIds` as given, or the text (or chat,
 * through the model's chat template) encoded with the model's tokenizer.
 * `tokenizer()` is asked only when needed; text on a model without one is
 * refused with NO_TOKENIZER.
 */
export function resolvePrompt (params: Pick<GenerateParams, 'prompt' | 'chat' | 'promptIds' | 'enableThinking'>, modelIdHex: string, tokenizer: () => ChatTokenizer | null): ResolvedPrompt {
  checkPromptParams(params)
  if (params.promptIds != null) {
    return { prompt: params.promptIds, tokenizer: tokenizer() }
  }
  const t = tokenizer()
  if (t == null) {
    throw new ModelError(ModelErrorCode.NO_TOKENIZER, `model ${modelIdHex} was imported without a tokenizer: it takes token ids only (use promptIds / --prompt-ids)`)
  }
  if (params.chat != null) {
    const messages: ChatMessage[] = typeof params.chat === 'string'
      ? [{ role: 'user', content: params.chat }]
      : params.chat.map(m => ({ ...m, role: m.role as ChatMessage['role'] }))
    return { prompt: t.encodeChat(messages, params.enableThinking != null ? { enableThinking: params.enableThinking } : {}), tokenizer: t }
  }
  return { prompt: t.encode(params.prompt as string), tokenizer: t }
}

/**
 * The ids that end a generation: the model config's and the tokenizer's
 * end-of-sequence tokens, and for a chat (`chat` true) the end-of-turn tokens
 * too (END_OF_TURN_TOKENS: a base model's config names only one of them).
 */
export function eosTokenIdsOf (configEos: number[], tokenizer: ChatTokenizer | null, chat = false): number[] {
  const turn = chat && tokenizer != null ? END_OF_TURN_TOKENS.map(t => tokenizer.tokenId(t)).filter(id => id != null) : []
  return [...new Set([...configEos, ...(tokenizer?.eosTokenIds ?? []), ...turn])]
}

/** The sampling options a request sets (unset ones keep the Sampler's defaults). */
export function samplingOf (params: Pick<GenerateParams, 'temperature' | 'topK' | 'topP' | 'repetitionPenalty' | 'seed'>): SamplingOptions {
  const all: SamplingOptions = { temperature: params.temperature, topK: params.topK, topP: params.topP, repetitionPenalty: params.repetitionPenalty, seed: params.seed }
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined))
}
