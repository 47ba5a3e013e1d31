/** Defaults of the partition planner; every one can be overridden per call. */
export const PLANNER_DEFAULTS = {
  /** holders wanted per layer */
  replicas: 1,
  /** local-improvement passes over all nodes (each pass re-places every node once) */
  maxPasses: 12,
  /** span evaluations (O(1) each, O(layers) on ties) allowed to pair moves per call; covers every pair of a small swarm */
  pairBudget: 2_000_000,
  /** span evaluations allowed to all perturbation rounds together */
  searchBudget: 8_000_000,
  /** perturbation rounds of iterated local search (small swarms only) */
  restarts: 32,
  /** swarms of at most this many nodes get pair moves in full and perturbation rounds */
  smallSwarm: 16,
  /** seed of the perturbation PRNG (plans are deterministic) */
  seed: 0x5eed,
  /** rebalance: a move must raise the bottleneck throughput by more than this fraction */
  minGain: 0.15,
  /** rebalance: balance moves proposed per call (joins and departures are always handled) */
  maxMoves: 1,
  /** throughputs closer than this relative difference count as equal */
  epsilon: 1e-9
} as const
