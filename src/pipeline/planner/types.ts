/** A contiguous range of decoder layers [start, end). */
export interface Span {
  start: number
  end: number
}

/** The model as the planner sees it. */
export interface ModelShape {
  /** decoder layers L */
  layers: number
  /** bytes one layer needs in memory: one number for every layer, or one per layer */
  memoryBytes: number | readonly number[]
  /**
   * relative compute cost of one layer per token (default 1 for every layer):
   * one number, or one per layer
   */
  compute?: number | readonly number[]
}

/** A node the planner may place. */
export interface PlannerNode {
  /** unique id (a peer id string) */
  id: string
  /** bytes the node can devote to layers in total, its current span included */
  memoryBytes: number
  /**
   * compute speed in layer·tokens/s at compute cost 1: holding a span of
   * total compute cost C, the node passes speed / C tokens/s through it
   * (speedFromSpanThroughput converts an announced span throughput)
   */
  speed: number
  /** serves a fixed span (`--layers A-B`): rebalance never proposes a balance move of it */
  pinned?: boolean
}

/** One node's span in a plan. */
export interface SpanAssignment extends Span {
  id: string
}

export interface PlanOptions {
  /** holders wanted per layer (default 1) */
  replicas?: number
  /** local-improvement passes (default 12) */
  maxPasses?: number
  /** span evaluations allowed to pair moves per call (default 2e6) */
  pairBudget?: number
  /** perturbation rounds on swarms of at most 16 nodes (default 24) */
  restarts?: number
}

/** How good an assignment is; what planPartition maximises, in this order: minHolders (capped at replicas), coveredSlots, bottleneck. */
export interface PlanMetrics {
  replicas: number
  /** holders per layer */
  holders: number[]
  /** tokens/s each layer can pass: the sum of its holders' span throughputs */
  layerThroughput: number[]
  /** min of layerThroughput: the swarm's end-to-end tokens/s */
  bottleneck: number
  /** the first layer with the lowest throughput */
  bottleneckLayer: number
  /** the fewest holders of any layer */
  minHolders: number
  /** sum over layers of min(holders, replicas) */
  coveredSlots: number
  /** every layer has at least `replicas` holders */
  replicasMet: boolean
  /** layers with fewer than `replicas` holders */
  shortLayers: number[]
  /** layers no node holds */
  uncoveredLayers: number[]
  /** no assignment of these nodes can pass more than this (sum of speeds / total compute cost) */
  throughputBound: number
  /**
   * no assignment of these nodes can give every layer more holders than this
   * (floor of the layer slots the nodes' memory holds over L, capped at replicas)
   */
  replicasBound: number
}

export interface Plan {
  /** one span per node that can hold at least one layer, in input order */
  spans: SpanAssignment[]
  /** nodes whose memory cannot hold even one layer */
  idle: string[]
  metrics: PlanMetrics
}

export interface RebalanceOptions extends PlanOptions {
  /** a balance move must raise the bottleneck by more than this fraction (default 0.15) */
  minGain?: number
  /** balance moves per call (default 1); joins and departures are always handled */
  maxMoves?: number
}

export interface Move {
  id: string
  /** the span before (absent for a join) */
  from?: Span
  /** the span after (absent for a departure) */
  to?: Span
  /** join: a new node; leave: a node gone; refit: its span no longer fits its memory; balance: a gain */
  reason: 'join' | 'leave' | 'refit' | 'balance'
}

export interface RebalanceResult {
  /** the assignment after the moves, one span per live node that holds one */
  spans: SpanAssignment[]
  moves: Move[]
  before: PlanMetrics
  after: PlanMetrics
}
