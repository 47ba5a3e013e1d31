/**
 * Defaults and bounds of the daemon's HTTP listener (the OpenAI-compatible
 * API and /metrics). config.ts layers config.json, BLYD_* env vars and
 * flags on top of these.
 */
import { IPC_MAX_JSON_DEPTH, IPC_MAX_JSON_VALUES } from '../constants.ts'

export const HTTP_API_DEFAULTS = {
  /** the interface bound when --http-listen gives a port only */
  host: '127.0.0.1',
  /** longest request body read; a longer one is answered 413 (config httpMaxBodyBytes) */
  maxBodyBytes: 4 * 1024 * 1024,
  /** generations (completions) handled at once; one more is answered 429 at once (config httpMaxConcurrent) */
  maxConcurrent: 8,
  /** TCP connections held at once; more are closed by the server before any request is read */
  maxConnections: 256,
  /** a client must send its request headers within this long */
  headersTimeoutMs: 30_000,
  /** ...and its whole request (headers and body) within this long; the answer may take longer */
  requestTimeoutMs: 60_000,
  /** an idle keep-alive connection is closed after this long */
  keepAliveTimeoutMs: 5_000,
  /** stop(): how long in-flight requests get to end after their generations were aborted, before their connections are closed */
  stopDrainMs: 5_000,
  /** request bodies are scanned before JSON.parse: nesting and value count bounds (as IPC lines) */
  maxJsonDepth: IPC_MAX_JSON_DEPTH,
  maxJsonValues: IPC_MAX_JSON_VALUES
} as const

/**
 * a request answered before its body was read (413, 401...) has what it
 * still sends read and dropped this long (so the answer reaches it), then
 * its connection is closed
 */
export const BODY_LINGER_MS = 1000

/** bounds of the config keys (typo guards, not tunings) */
export const MIN_HTTP_BODY_BYTES = 1024
export const MAX_HTTP_BODY_BYTES = 2 ** 30
export const MAX_HTTP_CONCURRENT = 4096

/** OpenAI's defaults where they differ from blyd's: temperature 1; a legacy completion's max_tokens 16 */
export const OPENAI_DEFAULT_TEMPERATURE = 1
export const OPENAI_COMPLETION_DEFAULT_MAX_TOKENS = 16
/** stop strings one request may give */
export const MAX_STOP_STRINGS = 16
