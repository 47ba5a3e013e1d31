/**
 * Wire format of the local IPC socket: JSON-RPC 2.0, one JSON value per
 * line (newline-delimited) in both directions. A request may receive any
 * number of `stream` notifications carrying its id before its final response.
 */

export const JSONRPC_VERSION = '2.0'

/** The notification method the server uses to stream partial results of a request. */
export const IPC_STREAM_METHOD = 'stream'

/** JSON-RPC 2.0 error codes. */
export const RpcErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603
} as const

export type RpcId = string | number | null

export interface RpcRequest {
  jsonrpc: typeof JSONRPC_VERSION
  method: string
  params?: unknown
  /** absent for notifications (no response) */
  id?: RpcId
}

export interface RpcErrorObject {
  code: number
  message: string
  /** for internal errors: `{ code: <BlydError code> }` */
  data?: { code?: string, [key: string]: unknown }
}

export interface RpcSuccess {
  jsonrpc: typeof JSONRPC_VERSION
  id: RpcId
  result: unknown
}

export interface RpcFailure {
  jsonrpc: typeof JSONRPC_VERSION
  id: RpcId
  error: RpcErrorObject
}

export type RpcResponse = RpcSuccess | RpcFailure

/** Params of a `stream` notification: the request's id plus the method's own fields. */
export interface StreamParams {
  id: RpcId
  [key: string]: unknown
}

export interface RpcNotification {
  jsonrpc: typeof JSONRPC_VERSION
  method: string
  params?: unknown
}

/** Result of `status`. */
export interface StatusResult {
  version: string
  peerId: string
  pid: number
  dataDir: string
  startedAt: number
  uptimeMs: number
  backend: string
  chain: {
    counts: { A: number, B: number, total: number, orphans: number }
    tips: { A: string[], B: string[] }
  }
  ipc: {
    requests: number
    errors: Record<string, number>
  }
}

/** Result of `id`. */
export interface IdResult {
  peerId: string
  publicKey: string
}

/** A block as JSON: ids and keys as lowercase hex, bigints as decimal strings. */
export interface BlockJson {
  id: string
  chain: 'A' | 'B'
  type: string
  version: number
  parents: string[]
  author: string
  timestamp: string
  fields: Record<string, { kind: string, value: string }>
  payloadSize: string
  chunkSize: number
  chunks: number
  payloadComplete: boolean
  receivedAt: number
  signature: string
}

/** Result of `chain.put`. */
export interface PutResult {
  id: string
  payloadSize: string
  chunks: number
}
