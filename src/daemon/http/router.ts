/**
 * The HTTP listener's routes, registered by the parts that serve them (the
 * OpenAI-compatible API, /metrics; a dashboard page and its event stream
 * later). A route is a method and a path: an exact path, or a prefix ending
 * in `/*` (a folder of static files, say). Exact paths win over prefixes,
 * longer prefixes over shorter ones.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE'

/** What a route's handler gets. */
export interface HttpRouteContext {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  /** aborted when the client goes away before the answer is complete, or when the listener stops */
  signal: AbortSignal
  /** The body as JSON: at most the listener's maxBodyBytes (else 413), scanned for depth and size before parsing (else 400). */
  readJson(): Promise<unknown>
}

export interface HttpRoute {
  method: HttpMethod
  /** an exact path (`/v1/models`) or a prefix (`/dashboard/*`) */
  path: string
  /**
   * Answers the request. A throw before anything was written is answered
   * in OpenAI's error shape (errors.ts); once an event stream has started, as
   * a last `data: {"error": ...}` event.
   */
  handler(ctx: HttpRouteContext): Promise<void>
  /** answered without the bearer key even when one is set (default false) */
  public?: boolean
  /** a generation: counts against the listener's maxConcurrent (default false) */
  generation?: boolean
}

export type RouteMatch = { route: HttpRoute } | { allow: HttpMethod[] } | undefined

export class HttpRouter {
  private readonly exact: Map<string, Map<HttpMethod, HttpRoute>>
  private readonly prefixes: Array<{ prefix: string, methods: Map<HttpMethod, HttpRoute> }>

  constructor () {
    this.exact = new Map()
    this.prefixes = []
  }

  /** Add a route; a method and path registered twice is a programming error. */
  add (route: HttpRoute): void {
    if (!route.path.startsWith('/')) {
      throw new TypeError(`route path must start with "/" (got ${JSON.stringify(route.path)})`)
    }
    let methods: Map<HttpMethod, HttpRoute>
    if (route.path.endsWith('/*')) {
      const prefix = route.path.slice(0, -1)
      let entry = this.prefixes.find(p => p.prefix === prefix)
      if (entry == null) {
        entry = { prefix, methods: new Map() }
        this.prefixes.push(entry)
        this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length)
      }
      methods = entry.methods
    } else {
      methods = this.exact.get(route.path) ?? new Map()
      this.exact.set(route.path, methods)
    }
    if (methods.has(route.method)) {
      throw new TypeError(`route ${route.method} ${route.path} is already registered`)
    }
    methods.set(route.method, route)
  }

  /** The route for `method` `path`; `{ allow }` when the path is known under other methods only; undefined when unknown. */
  match (method: string, path: string): RouteMatch {
    const methods = this.exact.get(path) ?? this.prefixes.find(p => path.startsWith(p.prefix))?.methods
    if (methods == null) {
      return undefined
    }
    const route = methods.get(method as HttpMethod)
    return route != null ? { route } : { allow: [...methods.keys()] }
  }

  /** every route as `METHOD path`, sorted */
  list (): string[] {
    const all = [...this.exact.values(), ...this.prefixes.map(p => p.methods)].flatMap(m => [...m.values()])
    return all.map(r => `${r.method} ${r.path}`).sort()
  }
}
