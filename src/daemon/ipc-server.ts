/**
 * JSON-RPC 2.0 over a Unix socket, newline-delimited JSON both ways.
 * Methods live in one registry (`register`); each has a params validator
 * (throw InvalidParamsError → -32602) and a handler that may stream partial
 * results as `stream` notifications before its final response.
 *
 * Memory is bounded whatever clients send (issue 16). A connection is not
 * read while its queued answers pass writeHighWaterBytes (until the peer read
 * them: 'drain') or while maxInflightPerConnection of its calls run (until half
 * of them are answered; a batch counts its calls). A batch holds at most
 * maxBatch calls (more: one -32600 error) and runs at most batchConcurrency of
 * them at once. A line nested deeper than maxDepth, with more than maxValues
 * values, or a batch past maxBatch, is refused by a linear scan before
 * JSON.parse. One unfinished line holds at most maxLineBytes, and all of them
 * together at most maxBufferedLineBytes: the connection whose line would pass
 * that gets an error line and is closed. Lines of IPC_HEAVY_LINE_BYTES or more
 * are parsed one per turn of the event loop (their connection is not read
 * meanwhile; they stay counted in that budget until parsed), so other
 * connections are served between them. At most maxConnections connections are
 * held: one more gets an error line and is closed.
 * Each refusal is counted (stats().refused, the `onRefusal` event).
 * Answers on one connection go out in the order their calls finish; lines are
 * read, and calls started, in the order they arrive.
 */
import { chmod, lstat, unlink } from 'node:fs/promises'
import { createServer } from 'node:net'
import { BlydError } from '../protocols/errors.ts'
import { IPC_STREAM_METHOD, JSONRPC_VERSION, RpcErrorCode } from '../protocols/ipc.ts'
import { silentLogger } from '../protocols/logger.ts'
import {
  DEFAULT_IPC_MAX_BATCH, DEFAULT_IPC_MAX_CONNECTIONS, DEFAULT_IPC_MAX_LINE_BYTES, IPC_BATCH_CONCURRENCY, IPC_BUFFERED_LINES_PER_MAX_LINE,
  IPC_HEAVY_LINE_BYTES, IPC_MAX_INFLIGHT_PER_CONNECTION, IPC_MAX_JSON_DEPTH, IPC_MAX_JSON_VALUES, IPC_STOP_DRAIN_MS, IPC_WRITE_HIGH_WATER_BYTES
} from './constants.ts'
import { DaemonErrorCode, InvalidParamsError, IpcError } from './errors.ts'
import { scanJson } from './json-scan.ts'
import { SharedLineBudget } from './line-budget.ts'
import { LineSplitter } from './line-splitter.ts'
import type { JsonScan } from './json-scan.ts'
import type { IpcLimitsJson, IpcLoadJson, IpcMethodMap, IpcMethods, IpcRefusalsJson, RpcErrorObject, RpcId, RpcResponse } from '../protocols/ipc.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
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
  /** a limit refused a connection, a batch, a deep line, a line of too many values or an unfinished line */
  onRefusal?(reason: IpcRefusal): void
  /** a connection stopped being read because its answers were not being read */
  onBackpressure?(): void
}

export type IpcRefusal = keyof IpcRefusalsJson

export interface IpcServerInit extends IpcServerEvents {
  socketPath: string
  maxLineBytes?: number
  maxInflightPerConnection?: number
  /** default DEFAULT_IPC_MAX_CONNECTIONS */
  maxConnections?: number
  /** default DEFAULT_IPC_MAX_BATCH */
  maxBatch?: number
  /** default IPC_BATCH_CONCURRENCY */
  batchConcurrency?: number
  /** default IPC_MAX_JSON_DEPTH */
  maxDepth?: number
  /** default IPC_MAX_JSON_VALUES */
  maxValues?: number
  /** default IPC_BUFFERED_LINES_PER_MAX_LINE x maxLineBytes; at least maxLineBytes */
  maxBufferedLineBytes?: number
  /** default IPC_WRITE_HIGH_WATER_BYTES */
  writeHighWaterBytes?: number
  /** logs as bly:daemon:ipc (default silent) */
  logger?: BlyComponentLogger
}

export interface IpcStats extends IpcLoadJson {
  requests: number
  /** error responses by JSON-RPC code */
  errors: Record<string, number>
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
  splitter: LineSplitter
  /** calls running (a batch counts its calls) */
  inflight: number
  /** queued answers passed writeHighWaterBytes; cleared on 'drain' */
  writeBlocked: boolean
  /** not read now (socket and splitter paused) */
  paused: boolean
  resumeScheduled: boolean
  /** refused (an error line went out): nothing more is read or answered */
  closing: boolean
  /** a heavy line of it waits in the heavy-line queue */
  heavy: boolean
}

interface HeavyLine {
  conn: Connection
  line: Buffer
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

/** fn over items with at most `concurrency` running at once; results in item order */
async function mapBounded<T, R> (items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  return results
}

/** a refused socket that does not read its error line is destroyed after this long */
const REFUSED_LINGER_MS = 1000

/**
 * End a refused connection so that its last line arrives: the line and a
 * FIN go out, and what the client still sends is read and dropped (the
 * connection's data handler ignores a closing connection) instead of left
 * unread, so the client's writes do not fail (EPIPE) and take the unread
 * error line down with them. The socket is destroyed when the client closes
 * or after REFUSED_LINGER_MS, whichever comes first.
 */
function lingerAndClose (socket: Socket, lastLine?: string): void {
  const timer = setTimeout(() => { socket.destroy() }, REFUSED_LINGER_MS).unref()
  socket.once('close', () => { clearTimeout(timer) })
  socket.on('data', () => {})
  socket.resume()
  if (lastLine === undefined) {
    socket.end()
  } else {
    socket.end(lastLine)
  }
}

/**
 * `Methods` types the registry: IpcMethods (protocols/ipc.ts) for the
 * daemon, a test's own map for a bare server.
 */
export class IpcServer<Methods extends IpcMethodMap<Methods> = IpcMethods> {
  readonly socketPath: string
  readonly limits: IpcLimitsJson
  private readonly maxLineBytes: number
  private readonly maxInflight: number
  private readonly log: BlyLogger
  private readonly events: IpcServerEvents
  private readonly methods: Map<string, Method>
  private readonly connections: Set<Connection>
  private readonly inflight: Set<Promise<void>>
  private server: Server | undefined
  private readonly lineBudget: SharedLineBudget
  /** long lines waiting to be parsed, one per turn of the event loop */
  private readonly heavyLines: HeavyLine[]
  private heavyScheduled: boolean
  private requests: number
  private readonly errors: Map<number, number>
  private peakLineBytes: number
  private peakWriteBytes: number
  private backpressurePauses: number
  private readonly refused: IpcRefusalsJson

  constructor (init: IpcServerInit) {
    this.socketPath = init.socketPath
    this.maxLineBytes = init.maxLineBytes ?? DEFAULT_IPC_MAX_LINE_BYTES
    this.maxInflight = init.maxInflightPerConnection ?? IPC_MAX_INFLIGHT_PER_CONNECTION
    const maxBufferedLineBytes = init.maxBufferedLineBytes ?? IPC_BUFFERED_LINES_PER_MAX_LINE * this.maxLineBytes
    if (maxBufferedLineBytes < this.maxLineBytes) {
      throw new IpcError(`maxBufferedLineBytes (${maxBufferedLineBytes}) must be at least maxLineBytes (${this.maxLineBytes})`)
    }
    this.limits = {
      maxConnections: init.maxConnections ?? DEFAULT_IPC_MAX_CONNECTIONS,
      maxBatch: init.maxBatch ?? DEFAULT_IPC_MAX_BATCH,
      batchConcurrency: init.batchConcurrency ?? IPC_BATCH_CONCURRENCY,
      maxDepth: init.maxDepth ?? IPC_MAX_JSON_DEPTH,
      maxValues: init.maxValues ?? IPC_MAX_JSON_VALUES,
      maxLineBytes: this.maxLineBytes,
      maxBufferedLineBytes,
      maxInflightPerConnection: this.maxInflight,
      writeHighWaterBytes: init.writeHighWaterBytes ?? IPC_WRITE_HIGH_WATER_BYTES
    }
    this.log = (init.logger ?? silentLogger()).forComponent('bly:daemon:ipc')
    this.events = { onRequest: init.onRequest, onError: init.onError, onRefusal: init.onRefusal, onBackpressure: init.onBackpressure }
    this.methods = new Map()
    this.connections = new Set()
    this.inflight = new Set()
    this.lineBudget = new SharedLineBudget(maxBufferedLineBytes)
    this.heavyLines = []
    this.heavyScheduled = false
    this.requests = 0
    this.errors = new Map()
    this.peakLineBytes = 0
    this.peakWriteBytes = 0
    this.backpressurePauses = 0
    this.refused = { connections: 0, batches: 0, depth: 0, values: 0, lines: 0 }
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
    let paused = 0
    for (const conn of this.connections) {
      if (conn.paused) {
        paused++
      }
    }
    return {
      requests: this.requests,
      errors: Object.fromEntries([...this.errors].map(([code, n]) => [String(code), n])),
      peakLineBytes: this.peakLineBytes,
      connections: this.connections.size,
      pausedConnections: paused,
      backpressurePauses: this.backpressurePauses,
      peakWriteBytes: this.peakWriteBytes,
      bufferedLineBytes: this.lineBudget.used,
      peakBufferedLineBytes: this.lineBudget.peak,
      refused: { ...this.refused },
      limits: { ...this.limits }
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
    if (this.connections.size >= this.limits.maxConnections) {
      this.refuseConnection(socket)
      return
    }
    const conn: Connection = {
      socket,
      controller: new AbortController(),
      splitter: new LineSplitter({
        maxLineBytes: this.maxLineBytes,
        budget: this.lineBudget,
        onLine: line => { this.onLine(conn, line) },
        onOverflow: () => {
          this.send(conn, this.failure(null, {
            code: RpcErrorCode.INVALID_REQUEST,
            message: `request line longer than ${this.maxLineBytes} bytes; skipped up to the next newline`,
            data: { code: DaemonErrorCode.LINE_TOO_LONG, maxLineBytes: this.maxLineBytes }
          }))
        },
        onBudgetExceeded: () => {
          this.refuse('lines')
          this.closeWith(conn, this.failure(null, {
            code: RpcErrorCode.SERVER_ERROR,
            message: `unfinished request lines over all connections would pass ${this.limits.maxBufferedLineBytes} bytes; closing this connection`,
            data: { code: DaemonErrorCode.LINES_BUDGET, maxBufferedLineBytes: this.limits.maxBufferedLineBytes }
          }))
        }
      }),
      inflight: 0,
      writeBlocked: false,
      paused: false,
      resumeScheduled: false,
      closing: false,
      heavy: false
    }
    this.connections.add(conn)
    socket.on('data', chunk => {
      if (conn.closing) {
        return
      }
      conn.splitter.push(chunk)
      this.peakLineBytes = Math.max(this.peakLineBytes, conn.splitter.buffered)
    })
    socket.on('drain', () => {
      if (conn.writeBlocked) {
        conn.writeBlocked = false
        this.updateFlow(conn)
      }
    })
    socket.on('end', () => {
      conn.splitter.end()
      this.maybeEnd(conn)
    })
    socket.on('error', err => { this.log('ipc.connection.error', { error: err.message }) })
    socket.on('close', () => {
      this.connections.delete(conn)
      conn.splitter.clear()
      conn.controller.abort(new IpcError('connection closed', DaemonErrorCode.IPC_CLOSED))
    })
  }

  /** over maxConnections: one error line, then close (destroyed if the peer does not read it) */
  private refuseConnection (socket: Socket): void {
    this.refuse('connections')
    const response = this.failure(null, {
      code: RpcErrorCode.SERVER_ERROR,
      message: `the daemon holds ${this.limits.maxConnections} IPC connections already; try again later`,
      data: { code: DaemonErrorCode.TOO_MANY_CONNECTIONS, maxConnections: this.limits.maxConnections }
    })
    socket.on('error', () => {})
    lingerAndClose(socket, JSON.stringify(response) + '\n')
  }

  /** answer with `response`, stop reading and answering, close (destroyed if the peer does not read it) */
  private closeWith (conn: Connection, response: RpcResponse): void {
    if (conn.closing) {
      return
    }
    this.send(conn, response)
    conn.closing = true
    conn.splitter.pause()
    conn.splitter.clear()
    lingerAndClose(conn.socket)
  }

  private refuse (reason: IpcRefusal): void {
    this.refused[reason]++
    this.events.onRefusal?.(reason)
  }

  /**
   * Pause reading `conn` while its answers are unread or its calls are at the
   * cap; resume (on a later turn of the event loop, so other connections get
   * theirs first) once the answers drained and half of the calls finished.
   */
  private updateFlow (conn: Connection): void {
    if (conn.closing || conn.socket.destroyed) {
      return
    }
    if (conn.writeBlocked || conn.heavy || conn.inflight >= this.maxInflight) {
      if (!conn.paused) {
        conn.paused = true
        conn.splitter.pause()
        conn.socket.pause()
      }
      return
    }
    if (!conn.paused || conn.resumeScheduled || conn.inflight > this.maxInflight / 2) {
      return
    }
    conn.resumeScheduled = true
    setImmediate(() => {
      conn.resumeScheduled = false
      if (!conn.paused || conn.closing || conn.socket.destroyed || conn.writeBlocked || conn.heavy || conn.inflight > this.maxInflight / 2) {
        return
      }
      conn.paused = false
      conn.splitter.resume()
      if (!conn.paused) {
        conn.socket.resume()
      }
      this.maybeEnd(conn)
    })
  }

  /** after the peer half-closed, end our side once every line was read and every request answered */
  private maybeEnd (conn: Connection): void {
    if (conn.inflight === 0 && !conn.heavy && conn.splitter.drained && conn.socket.readableEnded && !conn.socket.writableEnded) {
      conn.socket.end()
    }
  }

  /**
   * A line from `conn`'s splitter. A heavy one waits its turn in the queue
   * (its bytes reserved from the line budget; when they do not fit, it is
   * parsed at once, as every line was before the queue).
   */
  private onLine (conn: Connection, line: Buffer): void {
    if (conn.closing) {
      return
    }
    if (line.length >= IPC_HEAVY_LINE_BYTES && this.lineBudget.reserve(line.length)) {
      conn.heavy = true
      this.updateFlow(conn)
      this.heavyLines.push({ conn, line })
      this.scheduleHeavy()
      return
    }
    this.handleLine(conn, line)
  }

  /** parse the next heavy line on a later turn of the event loop, after pending I/O */
  private scheduleHeavy (): void {
    if (this.heavyScheduled || this.heavyLines.length === 0) {
      return
    }
    this.heavyScheduled = true
    setImmediate(() => {
      this.heavyScheduled = false
      const next = this.heavyLines.shift()
      if (next != null) {
        const { conn, line } = next
        this.lineBudget.release(line.length)
        conn.heavy = false
        if (!conn.closing && !conn.socket.destroyed) {
          this.handleLine(conn, line)
          this.updateFlow(conn)
          this.maybeEnd(conn)
        }
      }
      this.scheduleHeavy()
    })
  }

  private handleLine (conn: Connection, line: Buffer): void {
    const scan = scanJson(line, this.limits)
    const refusal = this.shapeRefusal(scan.refused)
    if (refusal != null) {
      this.refuse(refusal.reason)
      this.send(conn, this.failure(null, { code: RpcErrorCode.INVALID_REQUEST, message: `invalid request: ${refusal.message}`, data: refusal.data }))
      return
    }
    if (!scan.balanced) {
      // not JSON, said without copying and parsing it (a truncated 16 MiB line costs nothing more)
      this.send(conn, this.failure(null, { code: RpcErrorCode.PARSE_ERROR, message: 'parse error: a string, array or object is not closed (or closed but never opened)' }))
      return
    }
    let message: unknown
    try {
      message = JSON.parse(line.toString('utf8'))
    } catch (err: any) {
      this.send(conn, this.failure(null, { code: RpcErrorCode.PARSE_ERROR, message: `parse error: ${err.message}` }))
      return
    }
    this.track(conn, this.dispatch(conn, message), Array.isArray(message) ? Math.max(1, message.length) : 1)
  }

  /** the refusal of a line the pre-parse scan stopped at, if it did */
  private shapeRefusal (refused: JsonScan['refused']): { reason: IpcRefusal, message: string, data: Record<string, unknown> } | undefined {
    const { maxDepth, maxValues, maxBatch } = this.limits
    switch (refused) {
      case 'depth':
        return { reason: 'depth', message: `nested deeper than ${maxDepth} arrays and objects`, data: { code: DaemonErrorCode.TOO_DEEP, maxDepth } }
      case 'values':
        return { reason: 'values', message: `more than ${maxValues} JSON values in one line`, data: { code: DaemonErrorCode.TOO_MANY_VALUES, maxValues } }
      case 'batch':
        return { reason: 'batches', message: `a batch holds at most ${maxBatch} calls`, data: { code: DaemonErrorCode.BATCH_TOO_LARGE, maxBatch } }
      default:
        return undefined
    }
  }

  /** count `calls` in flight on `conn` until `work` settles */
  private track (conn: Connection, work: Promise<void>, calls: number): void {
    this.inflight.add(work)
    work.catch(() => {}).finally(() => { this.inflight.delete(work) })
    conn.inflight += calls
    this.updateFlow(conn)
    work.catch(err => {
      this.log.error('ipc.dispatch.failed', { error: err?.message })
    }).finally(() => {
      conn.inflight -= calls
      this.updateFlow(conn)
      this.maybeEnd(conn)
    })
  }

  private async dispatch (conn: Connection, message: unknown): Promise<void> {
    if (Array.isArray(message)) {
      if (message.length === 0) {
        this.send(conn, this.failure(null, { code: RpcErrorCode.INVALID_REQUEST, message: 'invalid request: empty batch' }))
        return
      }
      const responses = await mapBounded(message, this.limits.batchConcurrency, async m => this.call(conn, m))
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

  /**
   * Write one JSON line; false when the socket buffer is full (wait for drain).
   * Past writeHighWaterBytes queued, the connection is not read until 'drain'.
   */
  private send (conn: Connection, value: unknown): boolean {
    if (conn.closing || conn.socket.destroyed || conn.socket.writableEnded) {
      return true
    }
    let text: string
    try {
      text = JSON.stringify(value)
    } catch (err: any) {
      const id = (value as { id?: RpcId }).id ?? null
      text = JSON.stringify(this.failure(id, { code: RpcErrorCode.INTERNAL_ERROR, message: `cannot encode response: ${err.message}`, data: { code: 'ERR_INTERNAL' } }))
    }
    const ok = conn.socket.write(text + '\n')
    const queued = conn.socket.writableLength
    this.peakWriteBytes = Math.max(this.peakWriteBytes, queued)
    if (queued > this.limits.writeHighWaterBytes && !conn.writeBlocked) {
      conn.writeBlocked = true
      this.backpressurePauses++
      this.events.onBackpressure?.()
      this.updateFlow(conn)
    }
    return ok
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
