/**
 * Routing of a mesh generation over the live spans of one model, through the
 * min-cost route finder (src/pipeline/routing): a hop costs its peer's RTT
 * (from the record fetch's ping; unknown = 1 s) + the per-layer compute time
 * derived from the throughput the span announces, times the layers used +
 * queueLength steps of queue wait (+ a penalty when the stage has no free
 * session); on equal cost, fewer hops win. Stages serve exactly their span,
 * so `partial` stays off: a route is a chain of whole spans. A span with no
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
  return new MeshError(MeshErrorCode.NoRoute, missing.length > 0
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

function route<S extends RoutableSpan> (spans: readonly S[], numLayers: number, offset: number, banned: ReadonlySet<string>): RoutePlan<S> {
  const unknownLayerMs = measuredLayerMs(spans)
  const overhead = MESH_ROUTE_DEFAULTS.hopOverheadMs
  const priced = spans.map(span => ({ ...span, rttMs: typeof span.rttMs === 'number' && Number.isFinite(span.rttMs) && span.rttMs >= 0 ? span.rttMs + overhead : undefined, span }))
  try {
    const plan = findRoute(priced, numLayers, { banned, ...(unknownLayerMs != null ? { unknownLayerMs } : {}) })
    return { ...plan, hops: plan.hops.map(h => ({ ...h, span: h.span.span })) }
  } catch (err: any) {
    if (err instanceof RoutingError && err.code === RoutingErrorCode.NO_ROUTE) {
      throw noRoute(err, numLayers, offset, banned.size)
    }
    throw err
  }
}

/** The cheapest chain of whole live spans covering decoder layers [0, numLayers); throws ERR_MESH_NO_ROUTE. */
export function routeSpans<S extends RoutableSpan> (spans: readonly S[], numLayers: number, banned: ReadonlySet<string> = new Set()): S[] {
  return route(spans, numLayers, 0, banned).hops.map(h => h.span)
}

/** The cheapest chain of whole live spans covering exactly [lost.start, lost.end) with no banned peer; throws ERR_MESH_NO_ROUTE. */
export function planReplacement<S extends RoutableSpan> (spans: readonly S[], lost: { start: number, end: number }, banned: ReadonlySet<string>): S[] {
  const inside = spans.filter(s => s.start >= lost.start && s.end <= lost.end)
  const shifted = inside.map(s => ({ ...s, start: s.start - lost.start, end: s.end - lost.start, original: s }))
  return route(shifted, lost.end - lost.start, lost.start, banned).hops.map(h => h.span.original)
}
