/** Defaults of the route finder; every one can be overridden per call. */
export const ROUTING_DEFAULTS = {
  /** RTT assumed for a peer that could not be pinged */
  unknownRttMs: 1000,
  /** compute time per layer per token assumed when a span announces no throughput */
  unknownLayerMs: 50,
  /** added to a hop whose peer has no free session (it would answer BUSY) */
  fullPenaltyMs: 10_000,
  /** use part of a span (enter after its start, leave before its end): the stage protocol serves whole spans today */
  partial: false
} as const
