/**
 * IPC shapes of the mesh: `net.status`, `peers`, the serving part of
 * `status`, the route that `generate` reports, and `plan`.
 */

/** What `--model ID --layers ...` is doing (`status.serving`, null when nothing is served). */
export interface ServingJson {
  /** model manifest block id (hex) */
  model: string
  /** as configured: "START-END" or "auto" */
  layers: string
  state: 'stopped' | 'waiting-manifest' | 'choosing-span' | 'waiting-blocks' | 'loading' | 'serving' | 'error'
  /** the span, once settled: decoder layers [start, end) */
  start?: number
  end?: number
  /** what it waits for, or why it failed */
  detail?: string
  /** tensor-parallel worker threads running the span's layers, once loaded (0: the main thread) */
  workers?: number
  /** sessions open now, the bound, and the most open at once since the stage started */
  sessions?: number
  maxSessions?: number
  peakSessions?: number
  /** KV-cache positions reserved now, the bound, and the most reserved at once */
  reservedPositions?: number
  maxCachePositions?: number
  peakReservedPositions?: number
  /** steps waiting in the stage queue now */
  queuedSteps?: number
  /** OPENs answered BUSY, and sessions opened, since start */
  busy?: number
  opened?: number
  steps?: number
  positions?: number
  computeMs?: number
  /** the latest announcement round */
  announced?: { seq: number, expiresAt: number, putPeers: number }
  /** `--layers auto`: what the latest periodic re-plan decided */
  replan?: ReplanJson
  /** the latest re-plan that moved this node */
  lastMove?: ReplanJson
  /** the weights version served (hex; protocols/versions.md), once loaded */
  version?: string
  /**
   * The span's weights in memory (float32): `bytes` now over `copies` copies
   * (1 serving; 2 while a move or a version switch drains the old copy's
   * sessions), one copy's `spanBytes`, and `boundBytes`, the most it ever
   * holds: 2 copies + the largest unit being materialised (docs/pipeline.md)
   */
  weights?: { bytes: number, copies: number, spanBytes: number, boundBytes: number }
  /** old copies still finishing their sessions after a move or a switch (each freed at its last session or drainMs) */
  draining?: Array<{ version?: string, start: number, end: number, sessions: number }>
  /** the version switch in progress: the version loading, since when, and what it waits for */
  switching?: { version: string, since: number, detail: string }
  /** the latest version switch */
  lastSwitch?: VersionSwitchJson
}

/** A span server's move to a newly accepted weights version. */
export interface VersionSwitchJson {
  /** when it started (ms since the epoch) */
  at: number
  from?: string
  to: string
  /** ms from the start until the new version served new sessions (delta payloads fetched, weights loaded, stage up) */
  loadedMs: number
  /** ms from the start until the old copy was freed (its last session ended, or drainMs) */
  drainedMs?: number
}

/** One re-plan of a `--layers auto` node (src/mesh/span-replan.ts). */
export interface ReplanJson {
  /** when it ran (ms since the epoch) */
  at: number
  /** this node moved (from -> to) */
  moved: boolean
  /** the planner's bottleneck gain of the move it proposed (0.2 = +20%); null when a layer had no holder before; 0 when nothing moves */
  gain: number | null
  /** coverage | throughput (moved); confirming (a move proposed, made if the next re-plan proposes it too); other-node | no-gain | not-announced (stayed); error (the re-plan failed) */
  reason: string
  from?: { start: number, end: number }
  to?: { start: number, end: number }
  /** why the re-plan failed */
  error?: string
}

/** Result of `net.status`. */
export interface NetStatusJson {
  peerId: string
  /** dialable multiaddrs, each ending in /p2p/<peerId> */
  addrs: string[]
  connections: Array<{ peerId: string, addr: string }>
  /** fetches every payload (--full) */
  full: boolean
  /** rejected: refused with a penalty for the sender; refusedByCode: every refusal by chain error code (rejections and the Ignored local-state ones, e.g. ERR_CHUNK_LENGTH) */
  gossip: { accepted: number, ignored: number, rejected: number, published: number, refusedByCode: Record<string, number> }
  sync: {
    syncs: number
    syncErrors: number
    /** catch-ups tried again after a failed one */
    syncRetries: number
    blocksAdded: number
    chunksFetched: number
    chunkErrors: number
    /** offences counted against sync peers, by kind (chunk-corrupt, chunk-length, chunk-substituted, invalid-header, missing-ancestry) */
    offences: Record<string, number>
    /** peers banned, by reason (sync-score, gossip-score) */
    bans: Record<string, number>
    /** dials and inbound connections refused to banned peers */
    refused: number
    /** walks started for orphans' missing parents, parents fetched, parents given up on */
    orphanRequests: number
    orphanParentsFetched: number
    orphanParentsAbandoned: number
  }
  /** peers with a non-zero sync score or a ban */
  penalties: PeerPenaltyJson[]
}

/** One peer's standing in block sync's scores, as `net.status` reports it. */
export interface PeerPenaltyJson {
  peerId: string
  score: number
  banned: boolean
  /** unix ms the ban ends (banned peers only) */
  bannedUntil?: number
  /** offences counted, by kind */
  offences: Record<string, number>
}

/** Params of `peers`: one model (id or unique prefix), or every model on the local chain. */
export interface PeersParams {
  model?: string
}

/** One live span of one model, as `peers` lists it. */
export interface SpanJson {
  model: string
  peerId: string
  addrs: string[]
  start: number
  end: number
  backend: string
  /** the GPU adapter the span runs on (node record field 16), null when none said */
  adapter: string | null
  /** tokens per second through the span as the peer measured it */
  tokensPerSecond: number
  /** sessions the peer can still accept */
  freeSessions: number
  queueLength: number
  /** the peer runs `--layers auto` and may move to another span */
  movable: boolean
  /** bytes the peer devotes to layers, as it announces them (null: not said) */
  memoryBytes: number | null
  /** unix ms the record was fetched and verified */
  lastSeen: number
  /** unix ms the record expires */
  expiresAt: number
  /** ping round trip in ms; null when the peer could not be pinged */
  rttMs: number | null
  /** 'direct': asked the peer; 'dht': its stored record (peer unreachable); 'self': this node */
  source: 'direct' | 'dht' | 'self'
  /** the weights version the span serves (hex; protocols/versions.md); null when its record names none */
  version: string | null
}

/** Result of `peers`. */
export interface PeersResult {
  models: string[]
  spans: SpanJson[]
  connected: Array<{ peerId: string, addrs: string[] }>
}

/** One hop of a generation's route: decoder layers [start, end) ran on peerId. */
export interface RouteHopJson {
  peerId: string
  start: number
  end: number
  /** this node ran the hop itself */
  self: boolean
  /** milliseconds spent in this hop (compute + transport) */
  ms?: number
}

/** What `generate` adds to its result about where it ran. */
export interface GenerateRouteJson {
  /** 'local': every layer ran in this daemon's own inference service; 'mesh': through the route */
  via: 'local' | 'mesh'
  route: RouteHopJson[]
  /** mesh only: milliseconds in the local embedding + head */
  localMs?: number
  /** mesh only: stages that failed during the generation and what replaced them (route is the final one) */
  recoveries?: RecoveryJson[]
  /** mesh only: milliseconds from the request to the first token's logits (opening the stages and any waits for room included) */
  firstTokenMs?: number
  /** mesh only: back-offs taken because every holder of some layers answered BUSY */
  busyWaits?: number
}

/** One failover of a generation: the stage on peerId for [start, end) failed and `replacement` took over. */
export interface RecoveryJson {
  peerId: string
  /** closed | timeout | malformed | error | busy | inconsistent */
  reason: string
  error: string
  start: number
  end: number
  replacement: Array<{ peerId: string, start: number, end: number }>
  /** positions replayed into the replacement */
  positions: number
  /** largest relative difference of the replayed outputs from the lost stage's */
  replayDiff: number
  /** from the failure to the step's result through the replacement */
  ms: number
  /** reason timeout: the step deadline the stage missed (adaptive, at most the step timeout) */
  deadlineMs?: number
}

/** Params of `plan`: the model (default the one this node serves), replicas (default the config's), idle connected peers counted as nodes. */
export interface PlanParams {
  model?: string
  replicas?: number
  idlePeers?: boolean
}

/** A span of decoder layers [start, end) as `plan` reports it. */
export interface LayerSpanJson {
  start: number
  end: number
}

/** A node's span in a plan: `id` is its peer id. */
export interface SpanAssignmentJson extends LayerSpanJson {
  id: string
}

/** One move a rebalance would make (src/pipeline/planner's Move). */
export interface MoveJson {
  id: string
  /** the span before (absent for a join) */
  from?: LayerSpanJson
  /** the span after (absent for a departure) */
  to?: LayerSpanJson
  /** join: a new node; leave: a node gone; refit: its span no longer fits its memory; balance: a gain */
  reason: 'join' | 'leave' | 'refit' | 'balance'
}

/** A plan's figures: the bottleneck layer and its tokens/s, the fewest holders, the layers nobody holds. */
export interface MetricsJson {
  bottleneckLayer: number
  bottleneckTokensPerSecond: number
  minHolders: number
  replicasMet: boolean
  uncoveredLayers: number[]
  throughputBound: number
}

/** The swarm plan src/mesh/swarm-plan.ts computes (planSwarm). */
export interface SwarmPlanReport {
  layers: number
  replicas: number
  /** memoryEstimated: the node's record says no memory (this node's assumed); pinned: a fixed span the planner never moves */
  nodes: Array<{ peerId: string, start: number | null, end: number | null, memoryBytes: number, memoryEstimated: boolean, speed: number, speedEstimated: boolean, pinned: boolean, self: boolean, backend: string | null, adapter: string | null }>
  /** per layer: who holds it now and the tokens/s it can pass */
  coverage: Array<{ layer: number, holders: string[], tokensPerSecond: number }>
  /** now: the bottleneck layer and its tokens/s, the fewest holders, the layers nobody holds */
  current: MetricsJson
  /** what rebalance would change from here (at most one balance move, only past the 15% gain gate) */
  moves: MoveJson[]
  afterMoves: MetricsJson
  /** a plan from scratch (planPartition), for comparison */
  proposed: { spans: SpanAssignmentJson[], metrics: MetricsJson }
}

/** Result of `plan` (see src/mesh/swarm-plan.ts). */
export interface PlanResult extends SwarmPlanReport {
  model: string
  /** the memory every node is assumed to have (records carry none) */
  memoryBytes: number
  /** true when it is os.freemem() here, not the config's memoryBytes */
  memoryEstimated: boolean
  /** this node's backend and GPU adapter (null when none); on webgpu memoryBytes is device memory from --memory-bytes */
  backend: string | null
  adapter: string | null
}
