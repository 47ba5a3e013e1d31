/**
 * The daemon's HTTP listener: one node:http server on `host:port` (off
 * unless `--http-listen` is set; 127.0.0.1 by default), answering the
 * routes the parts register on its router (the OpenAI-compatible API,
 * /metrics). Every answer it writes itself is in OpenAI's error shape.
 *
 * Order of checks for each request: the route is looked up; unless the
 * route is public, the bearer key is checked when one is set (401, compared
 * in constant time over SHA-256 digests, before any body is read); an
 * unknown path is 404, a known path with another method 405; a generation
 * route past maxConcurrent running generations is 429 at once; then the
 * handler runs, reading the body within maxBodyBytes (413) as JSON (400).
 * A request answered before its body was read has the rest of its body
 * read and dropped for at most BODY_LINGER_MS, then its connection closed.
 * Limits: maxConnections sockets at once, headers within headersTimeoutMs,
 * the whole request within requestTimeoutMs (the answer may take longer),
 * idle keep-alive sockets closed after keepAliveTimeoutMs.
 *
 * A handler's signal is aborted when the client goes away before its
 * answer is complete (a streamed generation then stops at its next token)
 * and when the listener stops. stop() closes the listening socket, aborts
 * every in-flight request, gives them stopDrainMs to end, then closes every
 * connection.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { silentLogger } from '../../protocols/logger.ts'
import { readJsonBody } from './body.ts'
import { BODY_LINGER_MS, HTTP_API_DEFAULTS } from './constants.ts'
import { HttpApiError, HttpErrorCode, errorAnswer } from './errors.ts'
import { httpUrl } from './listen-address.ts'
import { HttpRouter } from './router.ts'
import type { HttpListenAddress } from './listen-address.ts'
import type { HttpRoute, HttpRouteContext } from './router.ts'
import type { BlyComponentLogger, BlyLogger } from '../../protocols/logger.ts'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'

export type HttpRefusal = 'auth' | 'body' | 'concurrency' | 'json'

export interface HttpApiEvents {
  /** every answered request: the route's path ('unknown' when none matched) and the status sent */
  onRequest?(route: string, status: number): void
  /** a request refused by a check or a limit */
  onRefusal?(reason: HttpRefusal): void
}

export interface HttpApiComponents extends HttpApiEvents {
  /** logs as bly:daemon:http (default silent) */
  logger?: BlyComponentLogger
}

export interface HttpApiInit {
  /** default HTTP_API_DEFAULTS.host (127.0.0.1) */
  host?: string
  /** 0: a free port (see `address`) */
  port: number
  /** the bearer key every non-public route asks for; null or absent: none */
  apiKey?: string | null
  maxBodyBytes?: number
  maxConcurrent?: number
  maxConnections?: number
  headersTimeoutMs?: number
  requestTimeoutMs?: number
  keepAliveTimeoutMs?: number
  stopDrainMs?: number
}

/** What the listener holds now. */
export interface HttpLoad {
  /** requests being handled */
  requests: number
  /** generation requests among them */
  generations: number
}

interface InFlight {
  controller: AbortController
  done: Promise<void>
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

export class HttpApi {
  readonly router: HttpRouter
  private readonly init: Required<Omit<HttpApiInit, 'apiKey'>>
  /** SHA-256 of the key (null: no key) */
  private readonly keyDigest: Buffer | null
  private readonly events: HttpApiEvents
  private readonly log: BlyLogger
  private readonly inflight: Set<InFlight>
  private generations: number
  private server: Server | undefined
  private bound: HttpListenAddress | undefined

  constructor (components: HttpApiComponents, init: HttpApiInit) {
    const d = HTTP_API_DEFAULTS
    this.init = {
      host: init.host ?? d.host,
      port: init.port,
      maxBodyBytes: init.maxBodyBytes ?? d.maxBodyBytes,
      maxConcurrent: init.maxConcurrent ?? d.maxConcurrent,
      maxConnections: init.maxConnections ?? d.maxConnections,
      headersTimeoutMs: init.headersTimeoutMs ?? d.headersTimeoutMs,
      requestTimeoutMs: init.requestTimeoutMs ?? d.requestTimeoutMs,
      keepAliveTimeoutMs: init.keepAliveTimeoutMs ?? d.keepAliveTimeoutMs,
      stopDrainMs: init.stopDrainMs ?? d.stopDrainMs
    }
    this.keyDigest = init.apiKey != null && init.apiKey !== '' ? sha256(init.apiKey) : null
    this.events = { onRequest: components.onRequest, onRefusal: components.onRefusal }
    this.log = (components.logger ?? silentLogger()).forComponent('bly:daemon:http')
    this.router = new HttpRouter()
    this.inflight = new Set()
    this.generations = 0
  }

  /** Register a route (see HttpRouter). */
  route (route: HttpRoute): void {
    this.router.add(route)
  }

  /** the address bound, once started */
  get address (): HttpListenAddress | undefined {
    return this.bound
  }

  /** `http://host:port` of the bound address, once started */
  get url (): string | undefined {
    return this.bound != null ? httpUrl(this.bound) : undefined
  }

  /** whether non-public routes ask for a bearer key */
  get keyRequired (): boolean {
    return this.keyDigest != null
  }

  load (): HttpLoad {
    return { requests: this.inflight.size, generations: this.generations }
  }

  async start (): Promise<void> {
    if (this.server != null) {
      return
    }
    const server = createServer({
      headersTimeout: this.init.headersTimeoutMs,
      requestTimeout: this.init.requestTimeoutMs,
      keepAliveTimeout: this.init.keepAliveTimeoutMs
    }, (req, res) => { this.handle(req, res) })
    server.maxConnections = this.init.maxConnections
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch((err: any) => {
      throw new HttpApiError(HttpErrorCode.LISTEN, `cannot listen on ${httpUrl({ host: this.init.host, port: this.init.port })} (${String(err?.code ?? err?.message ?? err)})`, null, { cause: err })
    })
    server.on('error', err => { this.log.error('http.error', { error: err.message }) })
    const addr = server.address()
    this.bound = addr != null && typeof addr === 'object' ? { host: addr.address, port: addr.port } : { host: this.init.host, port: this.init.port }
    this.server = server
    this.log.info('http.listening', { url: this.url, routes: this.router.list().join(' '), key: this.keyRequired })
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) {
      return
    }
    this.server = undefined
    const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
    server.closeIdleConnections()
    const inflight = [...this.inflight]
    for (const r of inflight) {
      r.controller.abort(new Error('the HTTP listener is stopping'))
    }
    let timer: NodeJS.Timeout | undefined
    const drained = await Promise.race([
      Promise.all(inflight.map(async r => r.done)).then(() => true),
      new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, this.init.stopDrainMs) })
    ])
    clearTimeout(timer)
    if (!drained) {
      this.log.warn('http.stop.slow', { requests: this.inflight.size, waitedMs: this.init.stopDrainMs })
    }
    server.closeAllConnections()
    await closed
    this.bound = undefined
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const controller = new AbortController()
    const { promise: done, resolve } = Promise.withResolvers<void>()
    const entry: InFlight = { controller, done }
    this.inflight.add(entry)
    let routeName = 'unknown'
    res.once('close', () => {
      if (!res.writableFinished) {
        controller.abort(new Error('the client went away'))
      }
      this.inflight.delete(entry)
      this.events.onRequest?.(routeName, res.statusCode)
      resolve()
    })
    this.dispatch(req, res, controller.signal, name => { routeName = name }).catch(err => {
      this.fail(req, res, err)
    })
  }

  private async dispatch (req: IncomingMessage, res: ServerResponse, signal: AbortSignal, named: (route: string) => void): Promise<void> {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      throw new HttpApiError(HttpErrorCode.NOT_FOUND, `not a request path: ${JSON.stringify(req.url)}`)
    }
    const match = this.router.match(req.method ?? 'GET', url.pathname)
    const route = match != null && 'route' in match ? match.route : undefined
    if (route != null) {
      named(route.path)
    }
    if (route?.public !== true && !this.authorized(req)) {
      this.events.onRefusal?.('auth')
      res.setHeader('www-authenticate', 'Bearer')
      throw new HttpApiError(HttpErrorCode.UNAUTHORIZED, req.headers.authorization == null
        ? 'no API key given: send it as "Authorization: Bearer KEY" (the daemon\'s httpApiKey)'
        : 'wrong API key (the daemon\'s httpApiKey)')
    }
    if (match == null) {
      throw new HttpApiError(HttpErrorCode.NOT_FOUND, `no route ${req.method ?? 'GET'} ${url.pathname} (routes: ${this.router.list().join(', ')})`)
    }
    if (route == null) {
      const allow = 'allow' in match ? match.allow : []
      res.setHeader('allow', allow.join(', '))
      throw new HttpApiError(HttpErrorCode.METHOD_NOT_ALLOWED, `${url.pathname} takes ${allow.join(', ')}, not ${req.method ?? 'GET'}`)
    }
    const limits = { maxBytes: this.init.maxBodyBytes, maxDepth: HTTP_API_DEFAULTS.maxJsonDepth, maxValues: HTTP_API_DEFAULTS.maxJsonValues }
    const ctx: HttpRouteContext = {
      req,
      res,
      url,
      signal,
      readJson: async () => readJsonBody(req, limits).catch(err => {
        if (err instanceof HttpApiError) {
          this.events.onRefusal?.(err.code === HttpErrorCode.BODY_TOO_LARGE ? 'body' : 'json')
        }
        throw err
      })
    }
    if (route.generation !== true) {
      await route.handler(ctx)
      return
    }
    if (this.generations >= this.init.maxConcurrent) {
      this.events.onRefusal?.('concurrency')
      throw new HttpApiError(HttpErrorCode.TOO_MANY_REQUESTS, `${this.generations} generations are running, the most this daemon takes at once (httpMaxConcurrent ${this.init.maxConcurrent}); retry later`)
    }
    this.generations++
    try {
      await route.handler(ctx)
    } finally {
      this.generations--
    }
  }

  /** Constant time over the digests: the key's length does not leak either. */
  private authorized (req: IncomingMessage): boolean {
    if (this.keyDigest == null) {
      return true
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    return m != null && timingSafeEqual(sha256(m[1]), this.keyDigest)
  }

  /** Answer a handler's failure: OpenAI's error shape, as an event when a stream has started. */
  private fail (req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const { status, body } = errorAnswer(err)
    if (res.destroyed) {
      // the client went away: nobody reads an answer, and nothing failed here
      this.log('http.request.gone', { code: body.error.code, message: body.error.message })
      return
    }
    if (status === 500) {
      this.log.error('http.request.failed', { status, error: err instanceof Error ? err : String(err) })
    } else if (status >= 500) {
      this.log.warn('http.request.failed', { status, code: body.error.code, message: body.error.message })
    } else {
      this.log('http.request.refused', { status, code: body.error.code, message: body.error.message })
    }
    if (res.writableEnded) {
      return
    }
    if (res.headersSent) {
      if (String(res.getHeader('content-type') ?? '').startsWith('text/event-stream')) {
        res.end(`data: ${JSON.stringify(body)}\n\n`)
      } else {
        res.destroy()
      }
      return
    }
    sendJson(res, status, body)
    if (!req.complete) {
      dropRestOfBody(req)
    }
  }
}

/**
 * After an answer sent before the request's body was read (413, 401...):
 * what the client still sends is read and dropped, so its writes do not
 * fail and take the answer down with them (a socket closed with unread
 * data resets the connection, and the client may lose the answer), for at
 * most BODY_LINGER_MS; then the connection is closed.
 */
function dropRestOfBody (req: IncomingMessage): void {
  const timer = setTimeout(() => { req.socket.destroy() }, BODY_LINGER_MS).unref()
  req.once('end', () => { clearTimeout(timer) })
  req.once('close', () => { clearTimeout(timer) })
  req.resume()
}

/** Answer `body` as JSON with `status`. */
export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export function createHttpApi (components: HttpApiComponents, init: HttpApiInit): HttpApi {
  return new HttpApi(components, init)
}
