/**
 * Client side of the IPC socket: one connection, many concurrent requests
 * multiplexed by id, `stream` notifications routed to their request.
 */
import { createConnection } from 'node:net'
import { IPC_STREAM_METHOD, JSONRPC_VERSION } from '../protocols/ipc.ts'
import { IPC_CLIENT_MAX_LINE_BYTES, IPC_CONNECT_TIMEOUT_MS } from './constants.ts'
import { DaemonErrorCode, DaemonNotRunningError, IpcError, IpcRemoteError } from './errors.ts'
import { LineSplitter } from './line-splitter.ts'
import type { IpcMethod, IpcMethodMap, IpcMethods, RpcId } from '../protocols/ipc.ts'
import type { Socket } from 'node:net'

export interface IpcClientInit {
  socketPath: string
  maxLineBytes?: number
  connectTimeoutMs?: number
}

/** `S`: the fields of the method's `stream` notifications (each also carries the request's `id`). */
export interface RequestOptions<S = Record<string, unknown>> {
  /** called for each `stream` notification of this request, in order */
  onStream?(params: S & { id: RpcId }): void | Promise<void>
  signal?: AbortSignal
}

/** The arguments after a method's name: its params (optional when it needs none), then the options. */
export type RequestArgs<T extends IpcMethod<unknown, unknown, unknown>> = {} extends T['params']
  ? [params?: T['params'], options?: RequestOptions<T['stream']>]
  : [params: T['params'], options?: RequestOptions<T['stream']>]

interface Pending {
  resolve(value: unknown): void
  reject(err: Error): void
  onStream?(params: any): void | Promise<void>
  /** stream callbacks run one after another; the final response waits for them */
  chain: Promise<void>
}

/**
 * `Methods` types the requests: IpcMethods (protocols/ipc.ts) for a daemon,
 * a test's own map for a bare server, AnyIpcMethods to send anything.
 */
export class IpcClient<Methods extends IpcMethodMap<Methods> = IpcMethods> {
  readonly socketPath: string
  private readonly socket: Socket
  private readonly pending: Map<number, Pending>
  private nextId: number
  private closedError: Error | undefined

  private constructor (socketPath: string, socket: Socket, maxLineBytes: number) {
    this.socketPath = socketPath
    this.socket = socket
    this.pending = new Map()
    this.nextId = 1
    const splitter = new LineSplitter({
      maxLineBytes,
      onLine: line => { this.onLine(line) },
      onOverflow: () => { this.fail(new IpcError(`daemon sent a line longer than ${maxLineBytes} bytes`)) }
    })
    socket.on('data', chunk => { splitter.push(chunk) })
    socket.on('error', err => { this.fail(new IpcError(`IPC connection failed (${(err as any).code ?? err.message})`, DaemonErrorCode.IPC_CLOSED, { cause: err })) })
    socket.on('close', () => { this.fail(new IpcError('the daemon closed the IPC connection', DaemonErrorCode.IPC_CLOSED)) })
  }

  /** Connect; throws DaemonNotRunningError when nothing listens on the socket. */
  static async connect<Methods extends IpcMethodMap<Methods> = IpcMethods> (init: IpcClientInit): Promise<IpcClient<Methods>> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(init.socketPath)
      const timer = setTimeout(() => {
        s.destroy()
        reject(new DaemonNotRunningError(`no answer from the daemon socket ${init.socketPath}`))
      }, init.connectTimeoutMs ?? IPC_CONNECT_TIMEOUT_MS)
      s.once('connect', () => {
        clearTimeout(timer)
        s.removeAllListeners('error')
        resolve(s)
      })
      s.once('error', (err: any) => {
        clearTimeout(timer)
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') {
          reject(new DaemonNotRunningError(`no blyd daemon is running (nothing listens on ${init.socketPath})`, { cause: err }))
        } else {
          reject(new IpcError(`cannot connect to ${init.socketPath} (${err.code ?? err.message})`, DaemonErrorCode.IPC, { cause: err }))
        }
      })
    })
    return new IpcClient<Methods>(init.socketPath, socket, init.maxLineBytes ?? IPC_CLIENT_MAX_LINE_BYTES)
  }

  /** Call `method`; resolves with its result, rejects with IpcRemoteError for an error response. */
  async request<M extends keyof Methods & string>(method: M, ...args: RequestArgs<Methods[M]>): Promise<Methods[M]['result']> {
    const params: unknown = args[0]
    const options: RequestOptions<Methods[M]['stream']> = args[1] ?? {}
    if (this.closedError != null) {
      throw this.closedError
    }
    options.signal?.throwIfAborted()
    const id = this.nextId++
    const result = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onStream: options.onStream, chain: Promise.resolve() })
    })
    const line = JSON.stringify({ jsonrpc: JSONRPC_VERSION, id, method, ...(params !== undefined ? { params } : {}) }) + '\n'
    this.socket.write(line)
    if (options.signal != null) {
      const signal = options.signal
      const onAbort = (): void => {
        this.pending.get(id)?.reject(signal.reason instanceof Error ? signal.reason : new IpcError('request aborted'))
        this.pending.delete(id)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      return result.finally(() => { signal.removeEventListener('abort', onAbort) })
    }
    return result
  }

  close (): void {
    this.socket.end()
    this.socket.destroySoon()
  }

  private onLine (line: Buffer): void {
    let msg: any
    try {
      msg = JSON.parse(line.toString('utf8'))
    } catch {
      this.fail(new IpcError('the daemon sent invalid JSON'))
      return
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      this.onMessage(m)
    }
  }

  private onMessage (msg: any): void {
    if (msg == null || typeof msg !== 'object') {
      return
    }
    if (msg.method === IPC_STREAM_METHOD && msg.params != null) {
      const p = this.pending.get(msg.params.id)
      if (p?.onStream != null) {
        const onStream = p.onStream
        p.chain = p.chain.then(async () => onStream(msg.params))
      }
      return
    }
    const p = this.pending.get(msg.id)
    if (p == null) {
      if (msg.id === null && msg.error != null) {
        // an error the daemon could not tie to a request (e.g. an overlong line)
        this.fail(new IpcRemoteError(msg.error.code, msg.error.message, msg.error.data))
      }
      return
    }
    this.pending.delete(msg.id)
    p.chain.then(() => {
      if (msg.error != null) {
        p.reject(new IpcRemoteError(msg.error.code, msg.error.message, msg.error.data))
      } else {
        p.resolve(msg.result)
      }
    }, err => { p.reject(err) })
  }

  private fail (err: Error): void {
    if (this.closedError == null) {
      this.closedError = err
    }
    for (const p of this.pending.values()) {
      p.reject(err)
    }
    this.pending.clear()
    this.socket.destroy()
  }
}

/** Connect, run `fn`, always close. */
export async function withIpcClient<T, Methods extends IpcMethodMap<Methods> = IpcMethods> (init: IpcClientInit, fn: (client: IpcClient<Methods>) => Promise<T>): Promise<T> {
  const client = await IpcClient.connect<Methods>(init)
  try {
    return await fn(client)
  } finally {
    client.close()
  }
}
