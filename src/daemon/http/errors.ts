/**
 * Errors of the HTTP listener, and how any error becomes an answer in
 * OpenAI's error shape `{ error: { message, type, param, code } }` with an
 * HTTP status: the listener's own (HttpApiError: bad JSON, a bad or
 * unsupported field, no or a wrong key, an unknown model or route, a body
 * too large, too many generations at once), blyd's coded errors by their
 * code (bad generation options 400, an unknown model 404, no route through
 * the mesh or an incomplete model 503), anything else 500.
 */
import { MeshErrorCode } from '../../mesh/errors.ts'
import { ModelErrorCode } from '../../model/errors.ts'
import { BlydError } from '../../protocols/errors.ts'
import { PipelineErrorCode } from '../../protocols/pipeline-errors.ts'
import { DaemonErrorCode } from '../errors.ts'
import type { OpenAiErrorJson } from '../../protocols/openai.ts'

export const HttpErrorCode = {
  /** the body is not JSON, or not the JSON object the route reads */
  BAD_JSON: 'ERR_HTTP_BAD_JSON',
  /** a field with a value out of range or of the wrong type */
  INVALID_PARAM: 'ERR_HTTP_INVALID_PARAM',
  /** a field blyd does not implement, given a value other than its neutral one (n > 1, tools, logprobs...) */
  UNSUPPORTED_PARAM: 'ERR_HTTP_UNSUPPORTED_PARAM',
  /** no bearer key, or a wrong one, while httpApiKey is set */
  UNAUTHORIZED: 'ERR_HTTP_UNAUTHORIZED',
  /** no model with that id, name or id prefix on chain A */
  MODEL_NOT_FOUND: 'ERR_HTTP_MODEL_NOT_FOUND',
  /** several models match, or `model` was omitted while several are on chain */
  AMBIGUOUS_MODEL: 'ERR_HTTP_AMBIGUOUS_MODEL',
  /** no route with that path */
  NOT_FOUND: 'ERR_HTTP_NOT_FOUND',
  /** a known path with another method */
  METHOD_NOT_ALLOWED: 'ERR_HTTP_METHOD_NOT_ALLOWED',
  /** the body is longer than httpMaxBodyBytes */
  BODY_TOO_LARGE: 'ERR_HTTP_BODY_TOO_LARGE',
  /** httpMaxConcurrent generations are running already */
  TOO_MANY_REQUESTS: 'ERR_HTTP_TOO_MANY_REQUESTS',
  /** the listener cannot bind its address */
  LISTEN: 'ERR_HTTP_LISTEN'
} as const

// eslint-disable-next-line @typescript-eslint/no-redeclare
export type HttpErrorCode = typeof HttpErrorCode[keyof typeof HttpErrorCode]

/** What an HttpApiError answers besides its message. */
export interface HttpErrorAnswer {
  status: number
  /** OpenAI's error type */
  type: string
  /** OpenAI's error code (null: none) */
  apiCode: string | null
  param?: string | null
}

/** The answer of each of the listener's own codes. */
const ANSWERS: Record<HttpErrorCode, HttpErrorAnswer> = {
  [HttpErrorCode.BAD_JSON]: { status: 400, type: 'invalid_request_error', apiCode: 'invalid_json' },
  [HttpErrorCode.INVALID_PARAM]: { status: 400, type: 'invalid_request_error', apiCode: 'invalid_value' },
  [HttpErrorCode.UNSUPPORTED_PARAM]: { status: 400, type: 'invalid_request_error', apiCode: 'unsupported_parameter' },
  [HttpErrorCode.UNAUTHORIZED]: { status: 401, type: 'invalid_request_error', apiCode: 'invalid_api_key' },
  [HttpErrorCode.MODEL_NOT_FOUND]: { status: 404, type: 'invalid_request_error', apiCode: 'model_not_found', param: 'model' },
  [HttpErrorCode.AMBIGUOUS_MODEL]: { status: 400, type: 'invalid_request_error', apiCode: 'ambiguous_model', param: 'model' },
  [HttpErrorCode.NOT_FOUND]: { status: 404, type: 'invalid_request_error', apiCode: 'unknown_url' },
  [HttpErrorCode.METHOD_NOT_ALLOWED]: { status: 405, type: 'invalid_request_error', apiCode: 'method_not_allowed' },
  [HttpErrorCode.BODY_TOO_LARGE]: { status: 413, type: 'invalid_request_error', apiCode: 'request_too_large' },
  [HttpErrorCode.TOO_MANY_REQUESTS]: { status: 429, type: 'requests', apiCode: 'rate_limit_exceeded' },
  [HttpErrorCode.LISTEN]: { status: 500, type: 'server_error', apiCode: null }
}

export class HttpApiError extends BlydError {
  readonly status: number
  readonly type: string
  readonly apiCode: string | null
  readonly param: string | null

  constructor (code: HttpErrorCode, message: string, param?: string | null, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'HttpApiError'
    const answer = ANSWERS[code]
    this.status = answer.status
    this.type = answer.type
    this.apiCode = answer.apiCode
    this.param = param ?? answer.param ?? null
  }
}

/** blyd codes answered 400: the request asks for something the model cannot do */
const BAD_REQUEST: ReadonlySet<string> = new Set([
  ModelErrorCode.BAD_OPTIONS, ModelErrorCode.NO_TOKENIZER, ModelErrorCode.BAD_TOKENIZER, ModelErrorCode.BAD_INPUT,
  ModelErrorCode.AMBIGUOUS_MODEL, DaemonErrorCode.INVALID_PARAMS
])

/** blyd codes answered 503: the node cannot run the model now (no route, not all stored, peers busy, stopping) */
const UNAVAILABLE: ReadonlySet<string> = new Set([
  MeshErrorCode.NO_ROUTE, MeshErrorCode.UNAVAILABLE, MeshErrorCode.NOT_STARTED, ModelErrorCode.MODEL_INCOMPLETE,
  ModelErrorCode.BLOCK_MISSING, ModelErrorCode.BACKEND_UNAVAILABLE, PipelineErrorCode.BUSY, DaemonErrorCode.STOPPING
])

/** Any error as an HTTP status and OpenAI's error shape. */
export function errorAnswer (err: unknown): { status: number, body: OpenAiErrorJson } {
  const message = err instanceof Error ? err.message : String(err)
  if (err instanceof HttpApiError) {
    return { status: err.status, body: { error: { message, type: err.type, param: err.param, code: err.apiCode } } }
  }
  if (err instanceof BlydError) {
    if (err.code === ModelErrorCode.MODEL_NOT_FOUND) {
      return { status: 404, body: { error: { message, type: 'invalid_request_error', param: 'model', code: 'model_not_found' } } }
    }
    if (BAD_REQUEST.has(err.code)) {
      return { status: 400, body: { error: { message, type: 'invalid_request_error', param: null, code: err.code } } }
    }
    const status = UNAVAILABLE.has(err.code) ? 503 : 500
    return { status, body: { error: { message, type: 'server_error', param: null, code: err.code } } }
  }
  return { status: 500, body: { error: { message: `internal error: ${message}`, type: 'server_error', param: null, code: null } } }
}
