/** Defaults of the route finder; every one can be overridden per call. */
export const ROUTING_DEFAULTS = {
  /** RTT assumed for a peer that could not be pinged */
  unknownRttMs: 1000,
  /** compute time per layer per token assumed when a span announces no throughput */
  unknownLayerMs: 50,
  /** added to a hop whose peer has no free session (it would answer BUSY) */
  fullPenaltyMs: 10_000,
  /** use part of a span (enter after its start, leave before its end); stages serve any sub-range of their span, and the mesh routes with it on (mesh-route.ts) */
  partial: false
} as const
