/**
 * findRoute: the cheapest chain of spans that carries a token through
 * decoder layers [0, L), as in Petals' sequence manager.
 *
 * Graph: the nodes are the layer boundaries 0..L; a span [s, e) gives the
 * edge s -> e (with `partial`, every edge b -> e' with s <= b < e' <= e).
 * Edge cost (ms) = RTT to the peer + per-layer compute time x layers used +
 * queue wait (queued whole-span steps x the span's step time) + a penalty when the
 * peer has no free session. Routes compare by (cost, hops): on equal cost the
 * fewer hops win. Every edge goes forward (b < e'), so the boundaries in
 * increasing order are a topological order and Dijkstra's relaxation reduces
 * to one pass over them: each boundary is final when it is reached. Ties of
 * (cost, hops) keep the chain met first, with spans scanned by (start, end,
 * peer id): the result does not depend on the input order.
 */
import { ROUTING_DEFAULTS } from './constants.ts'
import { RoutingError, RoutingErrorCode } from './errors.ts'
import type { HopCost, RoutableSpan, RouteOptions, RoutePlan } from './types.ts'

interface Edge<S> {
  span: S
  peer: string
  from: number
  to: number
  cost: HopCost
}

function invalid (message: string): RoutingError {
  return new RoutingError(RoutingErrorCode.INVALID_ARGUMENT, message)
}

function nonNegative (value: number, what: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw invalid(`${what} must be a finite number >= 0, got ${value}`)
  }
  return value
}

/** ms one token takes through a whole span, from its announced throughput */
function stepMs (span: RoutableSpan, unknownLayerMs: number): number {
  const milli = span.throughputMilli
  if (typeof milli === 'number' && Number.isFinite(milli) && milli > 0) {
    return 1e6 / milli
  }
  return unknownLayerMs * (span.end - span.start)
}

/** The cost of using layers [from, to) of `span` as one hop. */
export function hopCost (span: RoutableSpan, from: number, to: number, options: RouteOptions = {}): HopCost {
  const unknownRttMs = options.unknownRttMs ?? ROUTING_DEFAULTS.unknownRttMs
  const unknownLayerMs = options.unknownLayerMs ?? ROUTING_DEFAULTS.unknownLayerMs
  const fullPenaltyMs = options.fullPenaltyMs ?? ROUTING_DEFAULTS.fullPenaltyMs
  const step = stepMs(span, unknownLayerMs)
  const rttMs = typeof span.rttMs === 'number' && Number.isFinite(span.rttMs) && span.rttMs >= 0 ? span.rttMs : unknownRttMs
  const computeMs = step / (span.end - span.start) * (to - from)
  const queue = typeof span.queueLength === 'number' && Number.isFinite(span.queueLength) && span.queueLength > 0 ? span.queueLength : 0
  const queueMs = queue * step
  const busyMs = span.freeSessions === 0 ? fullPenaltyMs : 0
  return { rttMs, computeMs, queueMs, busyMs, totalMs: rttMs + computeMs + queueMs + busyMs }
}

function usableSpan (s: RoutableSpan, numLayers: number): boolean {
  return s != null && Number.isSafeInteger(s.start) && Number.isSafeInteger(s.end) && s.start >= 0 && s.end > s.start && s.end <= numLayers
}

function checkOptions (numLayers: number, spans: readonly RoutableSpan[], options: RouteOptions): void {
  if (!Number.isSafeInteger(numLayers) || numLayers < 1) {
    throw invalid(`a model needs a whole number of layers >= 1, got ${numLayers}`)
  }
  if (!Array.isArray(spans)) {
    throw invalid('spans must be an array')
  }
  nonNegative(options.unknownRttMs ?? ROUTING_DEFAULTS.unknownRttMs, 'unknownRttMs')
  nonNegative(options.unknownLayerMs ?? ROUTING_DEFAULTS.unknownLayerMs, 'unknownLayerMs')
  nonNegative(options.fullPenaltyMs ?? ROUTING_DEFAULTS.fullPenaltyMs, 'fullPenaltyMs')
}

function comparePeers (a: string, b: string): number {
  if (a === b) {
    return 0
  }
  return a < b ? -1 : 1
}

/** Well-formed spans of peers not banned, sorted by (start, end, peer id); and how many were banned. */
function usableSpans<S extends RoutableSpan> (spans: readonly S[], numLayers: number, options: RouteOptions): { usable: Array<{ span: S, peer: string }>, banned: number } {
  const bannedIds = new Set<string>()
  for (const id of options.banned ?? []) {
    bannedIds.add(id.toString())
  }
  let banned = 0
  const usable: Array<{ span: S, peer: string }> = []
  for (const span of spans) {
    if (!usableSpan(span, numLayers)) {
      continue
    }
    const peer = span.peerId.toString()
    if (bannedIds.has(peer)) {
      banned++
      continue
    }
    usable.push({ span, peer })
  }
  usable.sort((a, b) => a.span.start - b.span.start || a.span.end - b.span.end || comparePeers(a.peer, b.peer))
  return { usable, banned }
}

/** The edges leaving each boundary 0..numLayers-1. */
function buildEdges<S extends RoutableSpan> (usable: Array<{ span: S, peer: string }>, numLayers: number, options: RouteOptions): Array<Array<Edge<S>>> {
  const partial = options.partial ?? ROUTING_DEFAULTS.partial
  const out: Array<Array<Edge<S>>> = Array.from({ length: numLayers + 1 }, () => [])
  for (const { span, peer } of usable) {
    const lastFrom = partial ? span.end - 1 : span.start
    for (let from = span.start; from <= lastFrom; from++) {
      const firstTo = partial ? from + 1 : span.end
      for (let to = firstTo; to <= span.end; to++) {
        out[from].push({ span, peer, from, to, cost: hopCost(span, from, to, options) })
      }
    }
  }
  return out
}

function noRoute (usable: Array<{ span: RoutableSpan }>, numLayers: number, banned: number): RoutingError {
  const held = new Array<boolean>(numLayers).fill(false)
  for (const { span } of usable) {
    for (let l = span.start; l < span.end; l++) {
      held[l] = true
    }
  }
  const missing = held.flatMap((h, l) => h ? [] : [l])
  const why = banned > 0 ? ` (${banned} span${banned > 1 ? 's' : ''} of banned peers left out)` : ''
  const list = `${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`
  return new RoutingError(RoutingErrorCode.NO_ROUTE, missing.length > 0
    ? `no usable span holds layer${missing.length > 1 ? 's' : ''} ${list} of the ${numLayers}${why}`
    : `the ${usable.length} usable spans hold every layer but no chain of them meets end to end over [0, ${numLayers})${why}`, { missingLayers: missing })
}

/**
 * The cheapest route over decoder layers [0, numLayers) (see the file
 * comment). Spans of `banned` peers and malformed spans are skipped. Throws
 * ERR_ROUTING_NO_ROUTE (with `missingLayers`) when no chain covers every
 * layer, ERR_ROUTING_INVALID_ARGUMENT on bad options.
 */
export function findRoute<S extends RoutableSpan> (spans: readonly S[], numLayers: number, options: RouteOptions = {}): RoutePlan<S> {
  checkOptions(numLayers, spans, options)
  const { usable, banned } = usableSpans(spans, numLayers, options)
  const out = buildEdges(usable, numLayers, options)
  const best: Array<{ cost: number, hops: number, via?: Edge<S> } | undefined> = new Array(numLayers + 1)
  best[0] = { cost: 0, hops: 0 }
  for (let b = 0; b < numLayers; b++) {
    const here = best[b]
    if (here == null) {
      continue
    }
    for (const edge of out[b]) {
      const cost = here.cost + edge.cost.totalMs
      const hops = here.hops + 1
      const known = best[edge.to]
      if (known == null || cost < known.cost || (cost === known.cost && hops < known.hops)) {
        best[edge.to] = { cost, hops, via: edge }
      }
    }
  }
  const done = best[numLayers]
  if (done == null) {
    throw noRoute(usable, numLayers, banned)
  }
  const edges: Array<Edge<S>> = []
  for (let b = numLayers; b > 0;) {
    const edge = (best[b] as { via: Edge<S> }).via
    edges.unshift(edge)
    b = edge.from
  }
  const breakdown = { rttMs: 0, computeMs: 0, queueMs: 0, busyMs: 0 }
  for (const e of edges) {
    breakdown.rttMs += e.cost.rttMs
    breakdown.computeMs += e.cost.computeMs
    breakdown.queueMs += e.cost.queueMs
    breakdown.busyMs += e.cost.busyMs
  }
  return {
    hops: edges.map(e => ({ span: e.span, peerId: e.peer, start: e.from, end: e.to, cost: e.cost })),
    costMs: done.cost,
    breakdown
  }
}
