/**
 * Routing of a mesh generation over the live spans of one model, through the
 * min-cost route finder (src/pipeline/routing): a hop costs its peer's RTT
 * (from the record fetch's ping; unknown = 1 s) + the per-layer compute time
 * derived from the throughput the span announces, times the layers the hop
 * uses + queueLength whole-span steps of queue wait (+ a penalty when the stage has no
 * free session); on equal cost, fewer hops win. Stages serve any non-empty
 * sub-range of their span (Petals-style, protocols/infer.md), so `partial` is
 * on: a hop may enter a span after its start and leave it before its end,
 * and the route is a chain of such hops whose layers meet end to end (a
 * lost [0, 2) can be taken over by a live [0, 3) holder). A span with no
 * throughput measured yet (a fresh stage) is assumed as fast per layer as the
 * mean of the measured ones (the route finder's 50 ms per layer when none
 * is), so a new node is neither shunned nor preferred for being new. Every
 * hop also pays MESH_ROUTE_DEFAULTS.hopOverheadMs (a ping leaves out the
 * frame handling of a hop).
 *
 * routeSpans covers [0, L) for a new generation; planReplacement covers just
 * the layers [start, end) of a failed stage, without the banned peers, for
 * failover. Both throw ERR_MESH_NO_ROUTE naming the layers nobody holds.
 */
import { findRoute, RoutingError, RoutingErrorCode } from '../pipeline/routing/index.ts'
import { MESH_ROUTE_DEFAULTS } from './constants.ts'
import { MeshError, MeshErrorCode } from './errors.ts'
import type { RoutableSpan, RoutePlan } from '../pipeline/routing/index.ts'

function noRoute (err: RoutingError, numLayers: number, offset: number, banned: number): MeshError {
  const missing = err.missingLayers.map(l => l + offset)
  const why = banned > 0 ? ` (${banned} banned peer${banned > 1 ? 's' : ''} left out)` : ''
  const window = offset === 0 ? `of the ${numLayers}` : `of [${offset}, ${offset + numLayers})`
  return new MeshError(MeshErrorCode.NO_ROUTE, missing.length > 0
    ? `no live span holds layer${missing.length > 1 ? 's' : ''} ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''} ${window}${why}`
    : `the live spans hold every layer ${window} but no chain of them meets end to end${why}`, { cause: err })
}

/** Mean compute ms per layer per token over the spans that announce a throughput; undefined when none does. */
export function measuredLayerMs (spans: readonly RoutableSpan[]): number | undefined {
  const perLayer = spans.flatMap(s => {
    const milli = s.throughputMilli ?? 0
    const layers = s.end - s.start
    return Number.isFinite(milli) && milli > 0 && layers > 0 ? [1e6 / milli / layers] : []
  })
  return perLayer.length > 0 ? perLayer.reduce((a, b) => a + b, 0) / perLayer.length : undefined
}

function route<S extends RoutableSpan> (spans: readonly S[], numLayers: number, banned: ReadonlySet<string>, offset = 0, unknownLayerMs = measuredLayerMs(spans)): RoutePlan<S> {
  const overhead = MESH_ROUTE_DEFAULTS.hopOverheadMs
  const priced = spans.map(span => ({ ...span, rttMs: typeof span.rttMs === 'number' && Number.isFinite(span.rttMs) && span.rttMs >= 0 ? span.rttMs + overhead : undefined, span }))
  try {
    const plan = findRoute(priced, numLayers, { banned, partial: true, ...(unknownLayerMs != null ? { unknownLayerMs } : {}) })
    return { ...plan, hops: plan.hops.map(h => ({ ...h, span: h.span.span })) }
  } catch (err: any) {
    if (err instanceof RoutingError && err.code === RoutingErrorCode.NO_ROUTE) {
      throw noRoute(err, numLayers, offset, banned.size)
    }
    throw err
  }
}

/**
 * The cheapest chain of hops over the live spans covering decoder layers
 * [0, numLayers): each hop is its span (a copy) with `start` and `end` set
 * to the layers it runs, a sub-range of the span's. Throws ERR_MESH_NO_ROUTE.
 */
export function routeSpans<S extends RoutableSpan> (spans: readonly S[], numLayers: number, banned: ReadonlySet<string> = new Set()): S[] {
  return route(spans, numLayers, banned).hops.map(h => ({ ...h.span, start: h.start, end: h.end }))
}

/**
 * The cheapest chain of hops covering exactly [lost.start, lost.end) with
 * no banned peer, over every live span that holds some of those layers
 * (only the layers inside the lost range are used): each hop is its span (a
 * copy) with `start` and `end` set to the layers it runs. Throws
 * ERR_MESH_NO_ROUTE.
 */
export function planReplacement<S extends RoutableSpan> (spans: readonly S[], lost: { start: number, end: number }, banned: ReadonlySet<string>): S[] {
  const clipped = spans.flatMap(s => clip(s, lost.start, lost.end))
  return route(clipped, lost.end - lost.start, banned, lost.start, measuredLayerMs(spans))
    .hops.map(h => ({ ...h.span.original, start: h.start + lost.start, end: h.end + lost.start }))
}

/**
 * `span` cut to the layers it holds inside [lo, hi) and shifted by -lo (the
 * window planReplacement routes over), priced as the whole span: the
 * announced throughput and queue length are scaled by the share of layers
 * kept, so a layer costs the same compute and the queue the same wait.
 */
function clip<S extends RoutableSpan> (span: S, lo: number, hi: number): Array<S & { original: S }> {
  const start = Math.max(span.start, lo)
  const end = Math.min(span.end, hi)
  if (!(start < end)) {
    return []
  }
  const scale = (span.end - span.start) / (end - start)
  return [{
    ...span,
    start: start - lo,
    end: end - lo,
    ...(typeof span.throughputMilli === 'number' ? { throughputMilli: span.throughputMilli * scale } : {}),
    ...(typeof span.queueLength === 'number' ? { queueLength: span.queueLength * scale } : {}),
    original: span
  }]
}
