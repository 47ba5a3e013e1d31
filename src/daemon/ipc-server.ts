/**
 * JSON-RPC 2.0 over a Unix socket, newline-delimited JSON both ways.
 * Methods live in one registry (`register`); each has a params validator
 * (throw InvalidParamsError → -32602) and a handler that may stream partial
 * results as `stream` notifications before its final response.
 */
import { chmod, lstat, unlink } from 'node:fs/promises'
import { createServer } from 'node:net'
import { BlydError } from '../protocols/errors.ts'
import { IPC_STREAM_METHOD, JSONRPC_VERSION, RpcErrorCode } from '../protocols/ipc.ts'
import { DEFAULT_IPC_MAX_LINE_BYTES, IPC_MAX_INFLIGHT_PER_CONNECTION, IPC_STOP_DRAIN_MS } from './constants.ts'
import { DaemonErrorCode, InvalidParamsError, IpcError } from './errors.ts'
import { LineSplitter } from './line-splitter.ts'
import { silentLogger } from './logger.ts'
import type { Logger } from './logger.ts'
import type { IpcMethodMap, IpcMethods, RpcErrorObject, RpcId, RpcResponse } from '../protocols/ipc.ts'
import type { Server, Socket } from 'node:net'

/** What a handler gets besides its params; `S`: the fields of its method's `stream` notifications. */
export interface IpcContext<S = Record<string, unknown>> {
  /** the request id (undefined for a JSON-RPC notification, which gets no response) */
  id: RpcId | undefined
  /** aborted when the connection closes or the server stops */
  signal: AbortSignal
  /**
   * Send a `stream` notification for this request. Resolves once the socket
   * accepted it (waits for drain), so a fast producer follows a slow reader.
   */
  notify(params: S): Promise<void>
}

/** Checks and converts raw params; throws (ideally InvalidParamsError) when they are wrong. */
export type ParamsValidator<P> = (params: unknown) => P
export type MethodHandler<P, R, S = Record<string, unknown>> = (params: P, context: IpcContext<S>) => R | Promise<R>

export interface IpcServerEvents {
  /** called for every request that got a method lookup (method name or '<invalid>') */
  onRequest?(method: string): void
  /** called for every error response: JSON-RPC code plus the BlydError code if any */
  onError?(rpcCode: number, code: string | undefined): void
}

export interface IpcServerInit extends IpcServerEvents {
  socketPath: string
  maxLineBytes?: number
  maxInflightPerConnection?: number
  logger?: Logger
}

export interface IpcStats {
  requests: number
  /** error responses by JSON-RPC code */
  errors: Record<string, number>
  connections: number
  /** the most bytes of one unfinished request line held at any time (never more than maxLineBytes) */
  peakLineBytes: number
}

interface Method {
  validate: ParamsValidator<any>
  handler: MethodHandler<any, any, any>
}

interface Connection {
  socket: Socket
  controller: AbortController
  inflight: number
}

class RpcFault extends Error {
  readonly rpc: RpcErrorObject

  constructor (rpc: RpcErrorObject) {
    super(rpc.message)
    this.rpc = rpc
  }
}

function isValidId (id: unknown): id is RpcId {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))
}

/** what is wrong with a request object's envelope, if anything */
function envelopeProblem (req: Record<string, unknown>): string | undefined {
  if (req.jsonrpc !== JSONRPC_VERSION) {
    return '"jsonrpc" must be "2.0"'
  }
  if (typeof req.method !== 'string' || req.method === '') {
    return '"method" must be a non-empty string'
  }
  if (req.params !== undefined && (req.params === null || typeof req.params !== 'object')) {
    return '"params" must be an object or an array'
  }
  return undefined
}

/**
 * `Methods` types the registry: IpcMethods (protocols/ipc.ts) for the
 * daemon, a test's own map for a bare server.
 */
export class IpcServer<Methods extends IpcMethodMap<Methods> = IpcMethods> {
  readonly socketPath: string
  private readonly maxLineBytes: number
  private readonly maxInflight: number
  private readonly log: Logger
  private readonly events: IpcServerEvents
  private readonly methods: Map<string, Method>
  private readonly connections: Set<Connection>
  private readonly inflight: Set<Promise<void>>
  private server: Server | undefined
  private requests: number
  private readonly errors: Map<number, number>
  private peakLineBytes: number

  constructor (init: IpcServerInit) {
    this.socketPath = init.socketPath
    this.maxLineBytes = init.maxLineBytes ?? DEFAULT_IPC_MAX_LINE_BYTES
    this.maxInflight = init.maxInflightPerConnection ?? IPC_MAX_INFLIGHT_PER_CONNECTION
    this.log = init.logger ?? silentLogger()
    this.events = { onRequest: init.onRequest, onError: init.onError }
    this.methods = new Map()
    this.connections = new Set()
    this.inflight = new Set()
    this.requests = 0
    this.errors = new Map()
    this.peakLineBytes = 0
  }

  /**
   * Add a method of the map. Names are unique; registering one twice is a
   * programming error. The validator's output may be narrower than the
   * map's params (an enum for a string, say); the handler gets that output
   * and must return the map's result.
   */
  register<M extends keyof Methods & string, P extends Methods[M]['params']>(name: M, validate: ParamsValidator<P>, handler: MethodHandler<P, Methods[M]['result'], Methods[M]['stream']>): void {
    if (this.methods.has(name)) {
      throw new IpcError(`IPC method "${name}" is already registered`)
    }
    if (name === IPC_STREAM_METHOD || name.startsWith('rpc.')) {
      throw new IpcError(`IPC method name "${name}" is reserved`)
    }
    this.methods.set(name, { validate, handler })
  }

  /** registered method names, sorted */
  methodNames (): string[] {
    return [...this.methods.keys()].sort()
  }

  stats (): IpcStats {
    return {
      requests: this.requests,
      errors: Object.fromEntries([...this.errors].map(([code, n]) => [String(code), n])),
      connections: this.connections.size,
      peakLineBytes: this.peakLineBytes
    }
  }

  /**
   * Listen on the socket path (mode 0600). A leftover socket file is removed
   * first: the caller must hold the data dir lock, so no live daemon owns it.
   */
  async start (): Promise<void> {
    if (this.server != null) {
      return
    }
    await removeStaleSocket(this.socketPath)
    const server = createServer({ allowHalfOpen: true }, socket => { this.accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // the socket file is created by bind() inside listen(): a tight umask makes it 0600 from the start
      const umask = process.umask(0o177)
      try {
        server.listen(this.socketPath, () => {
          server.off('error', reject)
          resolve()
        })
      } finally {
        process.umask(umask)
      }
    }).catch((err: any) => {
      throw new IpcError(`cannot listen on ${this.socketPath} (${err.code ?? err.message})`, DaemonErrorCode.IPC, { cause: err })
    })
    await chmod(this.socketPath, 0o600)
    server.on('error', err => { this.log.error('ipc.error', { error: err.message }) })
    this.server = server
    this.log.info('ipc.listening', { socket: this.socketPath })
  }

  /** Stop accepting, end every connection (flushing what was written), remove the socket file. */
  async stop (): Promise<void> {
    const server = this.server
    if (server == null) {
      return
    }
    this.server = undefined
    const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
    for (const conn of this.connections) {
      conn.controller.abort(new IpcError('daemon is stopping', DaemonErrorCode.STOPPING))
      conn.socket.end()
      // a peer that never reads must not hold the stop up
      setTimeout(() => { conn.socket.destroy() }, 1000).unref()
    }
    // handlers saw their signal abort; let them unwind before the caller closes what they use
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled([...this.inflight]),
      new Promise<void>(resolve => { timer = setTimeout(resolve, IPC_STOP_DRAIN_MS) })
    ])
    clearTimeout(timer)
    await closed
    await unlink(this.socketPath).catch(() => {})
    this.log.info('ipc.closed', { socket: this.socketPath })
  }

  private accept (socket: Socket): void {
    const conn: Connection = { socket, controller: new AbortController(), inflight: 0 }
    this.connections.add(conn)
    const splitter = new LineSplitter({
      maxLineBytes: this.maxLineBytes,
      onLine: line => { this.onLine(conn, line) },
      onOverflow: () => {
        this.countError(RpcErrorCode.INVALID_REQUEST, DaemonErrorCode.LINE_TOO_LONG)
        this.send(conn, {
          jsonrpc: JSONRPC_VERSION,
          id: null,
          error: {
            code: RpcErrorCode.INVALID_REQUEST,
            message: `request line longer than ${this.maxLineBytes} bytes; skipped up to the next newline`,
            data: { code: DaemonErrorCode.LINE_TOO_LONG, maxLineBytes: this.maxLineBytes }
          }
        })
      }
    })
    socket.on('data', chunk => {
      splitter.push(chunk)
      this.peakLineBytes = Math.max(this.peakLineBytes, splitter.buffered)
    })
    socket.on('end', () => {
      splitter.end()
      this.maybeEnd(conn)
    })
    socket.on('error', err => { this.log.debug('ipc.connection.error', { error: err.message }) })
    socket.on('close', () => {
      this.connections.delete(conn)
      conn.controller.abort(new IpcError('connection closed', DaemonErrorCode.IPC_CLOSED))
    })
  }

  /** after the peer half-closed, end our side once every request was answered */
  private maybeEnd (conn: Connection): void {
    if (conn.inflight === 0 && conn.socket.readableEnded && !conn.socket.writableEnded) {
      conn.socket.end()
    }
  }

  private onLine (conn: Connection, line: Buffer): void {
    let message: unknown
    try {
      message = JSON.parse(line.toString('utf8'))
    } catch (err: any) {
      this.countError(RpcErrorCode.PARSE_ERROR, undefined)
      this.send(conn, { jsonrpc: JSONRPC_VERSION, id: null, error: { code: RpcErrorCode.PARSE_ERROR, message: `parse error: ${err.message}` } })
      return
    }
    this.track(conn, this.dispatch(conn, message))
  }

  private track (conn: Connection, work: Promise<void>): void {
    this.inflight.add(work)
    work.catch(() => {}).finally(() => { this.inflight.delete(work) })
    conn.inflight++
    if (conn.inflight >= this.maxInflight) {
      conn.socket.pause()
    }
    work.catch(err => {
      this.log.error('ipc.dispatch.failed', { error: err?.message })
    }).finally(() => {
      conn.inflight--
      if (conn.inflight < this.maxInflight && !conn.socket.destroyed) {
        conn.socket.resume()
      }
      this.maybeEnd(conn)
    })
  }

  private async dispatch (conn: Connection, message: unknown): Promise<void> {
    if (Array.isArray(message)) {
      if (message.length === 0) {
        this.send(conn, this.failure(null, { code: RpcErrorCode.INVALID_REQUEST, message: 'invalid request: empty batch' }))
        return
      }
      const responses = await Promise.all(message.map(async m => this.call(conn, m)))
      const answered = responses.filter((r): r is RpcResponse => r != null)
      if (answered.length > 0) {
        this.send(conn, answered)
      }
      return
    }
    const response = await this.call(conn, message)
    if (response != null) {
      this.send(conn, response)
    }
  }

  /** Run one request; undefined for notifications (no response). */
  private async call (conn: Connection, message: unknown): Promise<RpcResponse | undefined> {
    if (message == null || typeof message !== 'object' || Array.isArray(message)) {
      return this.failure(null, { code: RpcErrorCode.INVALID_REQUEST, message: 'invalid request: not a JSON object' })
    }
    const req = message as Record<string, unknown>
    const hasId = Object.hasOwn(req, 'id')
    const id = hasId && isValidId(req.id) ? req.id : null
    if (hasId && !isValidId(req.id)) {
      return this.failure(null, { code: RpcErrorCode.INVALID_REQUEST, message: 'invalid request: "id" must be a string, a number or null' })
    }
    const problem = envelopeProblem(req)
    if (problem != null || typeof req.method !== 'string') {
      return this.failure(id, { code: RpcErrorCode.INVALID_REQUEST, message: `invalid request: ${problem}` })
    }
    const method = this.methods.get(req.method)
    this.requests++
    this.events.onRequest?.(method == null ? '<unknown>' : req.method)
    const respond = (response: RpcResponse): RpcResponse | undefined => hasId ? response : undefined
    if (method == null) {
      return respond(this.failure(id, { code: RpcErrorCode.METHOD_NOT_FOUND, message: `method not found: ${req.method}` }))
    }
    let params: unknown
    try {
      params = method.validate(req.params)
    } catch (err: any) {
      return respond(this.failure(id, { code: RpcErrorCode.INVALID_PARAMS, message: `invalid params for ${req.method}: ${err.message}`, data: { code: DaemonErrorCode.INVALID_PARAMS } }))
    }
    const context: IpcContext = {
      id: hasId ? id : undefined,
      signal: conn.controller.signal,
      notify: async (fields) => this.notify(conn, id, fields)
    }
    try {
      const result = await method.handler(params, context)
      const response: RpcResponse = { jsonrpc: JSONRPC_VERSION, id, result: result ?? null }
      return respond(response)
    } catch (err: any) {
      return respond(this.failure(id, this.toRpcError(req.method, err)))
    }
  }

  private toRpcError (method: string, err: any): RpcErrorObject {
    if (err instanceof RpcFault) {
      return err.rpc
    }
    if (err instanceof InvalidParamsError) {
      return { code: RpcErrorCode.INVALID_PARAMS, message: err.message, data: { code: err.code } }
    }
    if (err instanceof BlydError) {
      return { code: RpcErrorCode.INTERNAL_ERROR, message: err.message, data: { code: err.code } }
    }
    this.log.error('ipc.method.failed', { method, error: err?.message, stack: process.env.BLYD_DEBUG === '1' ? err?.stack : undefined })
    return { code: RpcErrorCode.INTERNAL_ERROR, message: `internal error in ${method}: ${err?.message ?? String(err)}`, data: { code: typeof err?.code === 'string' ? err.code : 'ERR_INTERNAL' } }
  }

  private failure (id: RpcId, error: RpcErrorObject): RpcResponse {
    this.countError(error.code, error.data?.code)
    return { jsonrpc: JSONRPC_VERSION, id, error }
  }

  private countError (rpcCode: number, code: string | undefined): void {
    this.errors.set(rpcCode, (this.errors.get(rpcCode) ?? 0) + 1)
    this.events.onError?.(rpcCode, code)
  }

  private async notify (conn: Connection, id: RpcId, fields: Record<string, unknown>): Promise<void> {
    conn.controller.signal.throwIfAborted()
    const ok = this.send(conn, { jsonrpc: JSONRPC_VERSION, method: IPC_STREAM_METHOD, params: { ...fields, id } })
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { cleanup(); resolve() }
        const onAbort = (): void => { cleanup(); reject(conn.controller.signal.reason) }
        const cleanup = (): void => {
          conn.socket.off('drain', onDrain)
          conn.controller.signal.removeEventListener('abort', onAbort)
        }
        conn.socket.on('drain', onDrain)
        conn.controller.signal.addEventListener('abort', onAbort)
      })
    }
  }

  /** Write one JSON line; false when the socket buffer is full (wait for drain). */
  private send (conn: Connection, value: unknown): boolean {
    if (conn.socket.destroyed || conn.socket.writableEnded) {
      return true
    }
    let text: string
    try {
      text = JSON.stringify(value)
    } catch (err: any) {
      const id = (value as { id?: RpcId }).id ?? null
      text = JSON.stringify(this.failure(id, { code: RpcErrorCode.INTERNAL_ERROR, message: `cannot encode response: ${err.message}`, data: { code: 'ERR_INTERNAL' } }))
    }
    return conn.socket.write(text + '\n')
  }
}

async function removeStaleSocket (path: string): Promise<void> {
  let stat
  try {
    stat = await lstat(path)
  } catch (err: any) {
    if (err.code === 'ENOENT') {
      return
    }
    throw err
  }
  if (!stat.isSocket()) {
    throw new IpcError(`${path} exists and is not a socket; refusing to replace it`)
  }
  await unlink(path)
}

export function createIpcServer<Methods extends IpcMethodMap<Methods> = IpcMethods> (init: IpcServerInit): IpcServer<Methods> {
  return new IpcServer<Methods>(init)
}
