/**
 * JSON shapes of the daemon's OpenAI-compatible HTTP API
 * (protocols/http-api.md): the requests it reads, the responses, stream
 * chunks and errors it writes. Field names are OpenAI's and are an
 * interface: clients written for OpenAI's API read them. blyd's own
 * additions sit under a `blyd` key.
 */

/** Every error answer: `{ error: { message, type, param, code } }` with an HTTP status. */
export interface OpenAiErrorJson {
  error: {
    message: string
    /** invalid_request_error | requests (429) | server_error */
    type: string
    /** the request field at fault, or null */
    param: string | null
    /** OpenAI's code where one fits (model_not_found, invalid_api_key, ...), else blyd's ERR_ code, or null */
    code: string | null
  }
}

export interface OpenAiUsageJson {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export type OpenAiFinishReason = 'stop' | 'length'

/** blyd's additions to a (non-streamed) completion: the token ids and where the generation ran. */
export interface BlydCompletionExtras {
  /** the generated token ids */
  tokens: number[]
  /** local: in this daemon's process; mesh: through peers' spans */
  via?: 'local' | 'mesh'
  /** the spans the generation went through (mesh), as `generate` reports them */
  route?: Array<{ peerId: string, start: number, end: number, self: boolean }>
  /** blyd's own finish reason: eos | stop | length | aborted */
  finishReason: string
}

/** One model of `GET /v1/models`. */
export interface OpenAiModelJson {
  /** the model manifest's block id, hex */
  id: string
  object: 'model'
  /** the manifest block's timestamp, seconds since the epoch */
  created: number
  /** the importer's public key, hex */
  owned_by: string
  blyd: {
    /** the manifest's name ('' when none) */
    name: string
    /** the live weights version (hex), when this node reports versions */
    version?: string
    /** every unit's payload is stored on this node (else it generates through peers) */
    complete: boolean
  }
}

export interface OpenAiModelListJson {
  object: 'list'
  data: OpenAiModelJson[]
}

export interface OpenAiChatMessageJson {
  role: 'assistant'
  content: string
}

export interface OpenAiChatCompletionJson {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  /** the weights version the tokens were computed with (hex), when the node reads versions */
  system_fingerprint?: string
  choices: Array<{ index: number, message: OpenAiChatMessageJson, logprobs: null, finish_reason: OpenAiFinishReason }>
  usage: OpenAiUsageJson
  blyd: BlydCompletionExtras
}

export interface OpenAiChatCompletionChunkJson {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: Array<{ index: number, delta: { role?: 'assistant', content?: string }, logprobs: null, finish_reason: OpenAiFinishReason | null }>
  /** with stream_options.include_usage: null on every chunk but the last, which has no choices */
  usage?: OpenAiUsageJson | null
}

export interface OpenAiCompletionJson {
  id: string
  object: 'text_completion'
  created: number
  model: string
  /** the weights version the tokens were computed with (hex), when the node reads versions */
  system_fingerprint?: string
  choices: Array<{ index: number, text: string, logprobs: null, finish_reason: OpenAiFinishReason }>
  usage: OpenAiUsageJson
  blyd: BlydCompletionExtras
}

/** A streamed `text_completion` chunk (object and shape as OpenAI streams them). */
export interface OpenAiCompletionChunkJson {
  id: string
  object: 'text_completion'
  created: number
  model: string
  choices: Array<{ index: number, text: string, logprobs: null, finish_reason: OpenAiFinishReason | null }>
  usage?: OpenAiUsageJson | null
}
