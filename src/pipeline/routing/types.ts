/** What the route finder reads of a span (LiveSpan fits). */
export interface RoutableSpan {
  peerId: { toString(): string }
  start: number
  end: number
  /** ping round trip (ms); undefined = unknown (counts unknownRttMs) */
  rttMs?: number
  /** work queued at the peer, in whole-span steps */
  queueLength?: number
  /** tokens per second through the whole span, x1000; 0 / undefined = unknown */
  throughputMilli?: number
  /** sessions the peer can still accept; 0 = full (costs fullPenaltyMs) */
  freeSessions?: number
}

export interface RouteOptions {
  /** peer ids never to use (e.g. stages that just failed) */
  banned?: Iterable<{ toString(): string }>
  /** allow a hop to use part of a span (default false: whole spans only; the mesh sets it, stages serve sub-ranges) */
  partial?: boolean
  /** RTT of a peer with none measured (default 1000 ms) */
  unknownRttMs?: number
  /** per-layer compute time of a span that announces no throughput (default 50 ms) */
  unknownLayerMs?: number
  /** added to a hop to a peer with no free session (default 10 000 ms) */
  fullPenaltyMs?: number
}

/** The cost of one hop, ms per generated token. */
export interface HopCost {
  rttMs: number
  computeMs: number
  queueMs: number
  busyMs: number
  totalMs: number
}

export interface PlannedHop<S> {
  span: S
  peerId: string
  /** first layer this hop runs */
  start: number
  /** one past the last layer this hop runs */
  end: number
  cost: HopCost
}

export interface RoutePlan<S> {
  hops: Array<PlannedHop<S>>
  /** sum of the hops' totalMs */
  costMs: number
  breakdown: { rttMs: number, computeMs: number, queueMs: number, busyMs: number }
}
