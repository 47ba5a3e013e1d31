/**
 * An OpenAI request body (`/v1/chat/completions`, `/v1/completions`) read
 * into blyd's `generate` params. Fields map as follows (protocols/http-api.md):
 * `max_tokens` (chat: or `max_completion_tokens`) -> maxNewTokens (absent:
 * OpenAI's 16 for a completion, blyd's 256 for a chat); `temperature` ->
 * temperature (absent: OpenAI's 1; 0 = greedy); `top_p` -> topP; `seed` ->
 * seed (absent: a random seed per request, as OpenAI samples); `stop` (a
 * string or a list) -> stop strings, the output cut before the first;
 * blyd's extensions `top_k` and `repetition_penalty` -> topK and
 * repetitionPenalty. Chat `messages` (roles system, developer (as system),
 * user, assistant, tool; content a string or text parts) go through the
 * model's chat template as `generate --chat` does; a completion's `prompt`
 * is a string or token ids (a one-element list of either is accepted).
 * Fields blyd does not implement are refused (400 unsupported_parameter)
 * unless they carry their neutral value (n 1, logprobs false, no tools,
 * frequency and presence penalties 0, text response format...); other
 * unknown fields are ignored, as OpenAI's SDKs may add some.
 */
import { randomInt } from 'node:crypto'
import { MAX_STOP_STRINGS, OPENAI_COMPLETION_DEFAULT_MAX_TOKENS, OPENAI_DEFAULT_TEMPERATURE } from './constants.ts'
import { HttpApiError, HttpErrorCode } from './errors.ts'
import type { GenerateParams } from '../../protocols/ipc.ts'

/** A request as blyd runs it. */
export interface OpenAiGeneration {
  /** as the request named it (undefined: the one model on chain) */
  model: string | undefined
  stream: boolean
  /** stream_options.include_usage: a last chunk carries the usage */
  includeUsage: boolean
  /** `generate` params but the model */
  params: Omit<GenerateParams, 'model'>
}

type Body = Record<string, unknown>

function invalid (param: string, message: string): HttpApiError {
  return new HttpApiError(HttpErrorCode.INVALID_PARAM, `"${param}" ${message}`, param)
}

function given (body: Body, key: string): boolean {
  return body[key] !== undefined && body[key] !== null
}

function number (body: Body, key: string, check: (n: number) => boolean, range: string): number | undefined {
  if (!given(body, key)) {
    return undefined
  }
  const v = body[key]
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) {
    throw invalid(key, `must be ${range} (got ${JSON.stringify(v)})`)
  }
  return v
}

function integer (body: Body, key: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return number(body, key, n => Number.isSafeInteger(n) && n >= min && n <= max, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`)
}

function boolean (body: Body, key: string): boolean | undefined {
  if (!given(body, key)) {
    return undefined
  }
  if (typeof body[key] !== 'boolean') {
    throw invalid(key, `must be true or false (got ${JSON.stringify(body[key])})`)
  }
  return body[key] as boolean
}

function unsupported (param: string, message: string): HttpApiError {
  return new HttpApiError(HttpErrorCode.UNSUPPORTED_PARAM, `"${param}" ${message}`, param)
}

const isEmptyList = (v: unknown): boolean => Array.isArray(v) && v.length === 0
const noTools = 'is not supported: blyd does not call tools'

/** Fields blyd does not implement: each allowed only with its neutral value (null or absent always is). */
const UNSUPPORTED: Array<{ key: string, neutral(v: unknown): boolean, message: string }> = [
  { key: 'n', neutral: v => v === 1, message: 'must be 1: blyd returns one choice per request' },
  { key: 'best_of', neutral: v => v === 1, message: 'must be 1' },
  { key: 'logprobs', neutral: v => v === false || v === 0, message: 'is not supported' },
  { key: 'top_logprobs', neutral: v => v === 0, message: 'is not supported' },
  { key: 'echo', neutral: v => v === false, message: 'is not supported' },
  { key: 'suffix', neutral: v => v === '', message: 'is not supported' },
  { key: 'frequency_penalty', neutral: v => v === 0, message: 'is not supported (blyd has repetition_penalty)' },
  { key: 'presence_penalty', neutral: v => v === 0, message: 'is not supported (blyd has repetition_penalty)' },
  { key: 'tools', neutral: isEmptyList, message: noTools },
  { key: 'functions', neutral: isEmptyList, message: noTools },
  { key: 'tool_choice', neutral: v => v === 'none', message: noTools },
  { key: 'logit_bias', neutral: v => typeof v === 'object' && Object.keys(v as object).length === 0, message: 'is not supported' },
  { key: 'response_format', neutral: v => typeof v === 'object' && (v as Body).type === 'text', message: 'is not supported (only {"type":"text"})' }
]

/** Refuse fields blyd does not implement unless neutral. */
function checkUnsupported (body: Body): void {
  for (const { key, neutral, message } of UNSUPPORTED) {
    if (given(body, key) && !neutral(body[key])) {
      throw unsupported(key, message)
    }
  }
}

function stopStrings (body: Body): string[] | undefined {
  if (!given(body, 'stop')) {
    return undefined
  }
  const list = typeof body.stop === 'string' ? [body.stop] : body.stop
  if (!Array.isArray(list) || list.length > MAX_STOP_STRINGS || !list.every(s => typeof s === 'string' && s !== '')) {
    throw invalid('stop', `must be a non-empty string or a list of at most ${MAX_STOP_STRINGS} of them`)
  }
  return list
}

function streamOptions (body: Body, stream: boolean): boolean {
  if (!given(body, 'stream_options')) {
    return false
  }
  const options = body.stream_options
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalid('stream_options', 'must be an object')
  }
  if (!stream) {
    throw invalid('stream_options', 'is only allowed with "stream": true')
  }
  const usage = (options as Body).include_usage
  if (usage !== undefined && usage !== null && typeof usage !== 'boolean') {
    throw invalid('stream_options.include_usage', 'must be true or false')
  }
  return usage === true
}

/** The fields both routes share: model, stream, sampling, stop, max tokens. */
function common (body: unknown, defaultMaxTokens: number | undefined, maxTokensKeys: string[]): { body: Body, generation: OpenAiGeneration } {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpApiError(HttpErrorCode.BAD_JSON, 'the request body must be a JSON object')
  }
  const b = body as Body
  checkUnsupported(b)
  if (given(b, 'model') && (typeof b.model !== 'string' || b.model === '')) {
    throw invalid('model', 'must be a model id, id prefix or name')
  }
  const stream = boolean(b, 'stream') ?? false
  let maxNewTokens: number | undefined
  for (const key of maxTokensKeys) {
    maxNewTokens ??= integer(b, key, 0)
  }
  maxNewTokens ??= defaultMaxTokens
  const temperature = number(b, 'temperature', n => n >= 0 && n <= 2, 'a number from 0 to 2') ?? OPENAI_DEFAULT_TEMPERATURE
  const topP = number(b, 'top_p', n => n > 0 && n <= 1, 'a number above 0, at most 1')
  const topK = integer(b, 'top_k', 0)
  const repetitionPenalty = number(b, 'repetition_penalty', n => n > 0, 'a number above 0')
  const seed = integer(b, 'seed', Number.MIN_SAFE_INTEGER) ?? randomInt(0, 2 ** 31)
  const stop = stopStrings(b)
  const params: OpenAiGeneration['params'] = {
    temperature,
    seed,
    ...(maxNewTokens != null ? { maxNewTokens } : {}),
    ...(topP != null ? { topP } : {}),
    ...(topK != null ? { topK } : {}),
    ...(repetitionPenalty != null ? { repetitionPenalty } : {}),
    ...(stop != null ? { stop } : {})
  }
  return {
    body: b,
    generation: { model: given(b, 'model') ? b.model as string : undefined, stream, includeUsage: streamOptions(b, stream), params }
  }
}

const CHAT_ROLES: Record<string, 'system' | 'user' | 'assistant' | 'tool'> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool'
}

/** A message's content: a string, or a list of text parts (joined); null only for an assistant message. */
function messageContent (content: unknown, role: string, at: string): string {
  if (typeof content === 'string') {
    return content
  }
  if (content == null && role === 'assistant') {
    return ''
  }
  if (Array.isArray(content)) {
    return content.map((part, i) => {
      if (part == null || typeof part !== 'object' || (part as Body).type !== 'text' || typeof (part as Body).text !== 'string') {
        throw new HttpApiError((part as Body)?.type != null && (part as Body).type !== 'text' ? HttpErrorCode.UNSUPPORTED_PARAM : HttpErrorCode.INVALID_PARAM,
          `"${at}.content[${i}]" must be a text part {"type":"text","text":...} (blyd's models read text only)`, `${at}.content`)
      }
      return (part as Body).text as string
    }).join('')
  }
  throw invalid(`${at}.content`, 'must be a string or a list of text parts')
}

/** `POST /v1/chat/completions`: the messages through the model's chat template. */
export function chatCompletionRequest (body: unknown): OpenAiGeneration {
  const { body: b, generation } = common(body, undefined, ['max_completion_tokens', 'max_tokens'])
  const messages = b.messages
  if (!Array.isArray(messages) || messages.length === 0) {
    throw invalid('messages', 'must be a non-empty list of messages')
  }
  const chat = messages.map((m: unknown, i) => {
    const at = `messages[${i}]`
    if (m == null || typeof m !== 'object' || Array.isArray(m)) {
      throw invalid(at, 'must be an object with a role and a content')
    }
    const role = CHAT_ROLES[String((m as Body).role)]
    if (role == null) {
      throw invalid(`${at}.role`, `must be one of ${Object.keys(CHAT_ROLES).join(', ')} (got ${JSON.stringify((m as Body).role)})`)
    }
    return { role, content: messageContent((m as Body).content, role, at) }
  })
  return { ...generation, params: { ...generation.params, chat } }
}

/** `POST /v1/completions`: a prompt string, or token ids. */
export function completionRequest (body: unknown): OpenAiGeneration {
  const { body: b, generation } = common(body, OPENAI_COMPLETION_DEFAULT_MAX_TOKENS, ['max_tokens'])
  let prompt = b.prompt
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0]))) {
    prompt = prompt[0]
  }
  if (typeof prompt === 'string') {
    if (prompt === '') {
      throw invalid('prompt', 'must not be empty')
    }
    return { ...generation, params: { ...generation.params, prompt } }
  }
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every(id => Number.isSafeInteger(id) && id >= 0)) {
    return { ...generation, params: { ...generation.params, promptIds: prompt as number[] } }
  }
  if (Array.isArray(prompt) && prompt.length > 1) {
    throw unsupported('prompt', 'must be one prompt: blyd answers one prompt per request')
  }
  throw invalid('prompt', 'must be a non-empty string or a non-empty list of token ids')
}
