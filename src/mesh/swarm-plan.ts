/**
 * The partition planner (src/pipeline/planner) over the swarm as this node
 * sees it: `--layers auto` (chooseAutoSpan) and `blyd plan` (planSwarm).
 *
 * The swarm view (swarmView): one planner node per peer announcing a live
 * span of the model, plus this node, plus (optionally) connected peers that
 * announce nothing yet. Layer sizes are the manifest's unit payload sizes.
 * A node's memory is what its record says (a node configured with
 * `memoryBytes` announces it); a node whose record says nothing is assumed
 * to have this node's memory (config `memoryBytes`, else os.freemem() at the
 * time); either way at least what its current span takes. A node whose
 * record is not flagged movable serves a fixed `--layers A-B` span: it is
 * pinned, so rebalance never proposes to move it. A node's speed comes from the
 * throughput its span announces (speedFromSpanThroughput); a node with none
 * measured yet gets the mean of the known speeds (1 when none is known).
 *
 * chooseAutoSpan: when no other peer serves the model yet, planPartition
 * over the whole view (nodes in peer-id order, so peers starting together
 * compute the same plan and each takes its own share) and this node takes
 * its span in it. When others already serve, their spans are kept as they
 * are (nobody else moves because this node joined): rebalance with no
 * balance move places this node at its best span given theirs, coverage of
 * `replicas` holders per layer first, then the bottleneck throughput.
 */
import { planPartition, rebalance, speedFromSpanThroughput, evaluatePlan } from '../pipeline/planner/index.ts'
import { MeshError, MeshErrorCode } from './errors.ts'
import type { ModelShape, PlanMetrics, PlannerNode, Span, SpanAssignment } from '../pipeline/planner/index.ts'
import type { MetricsJson, SwarmPlanReport } from '../protocols/ipc-mesh.ts'

/** What the swarm view reads of a live span (LiveSpan fits). */
export interface SwarmSpan {
  peerId: { toString(): string }
  start: number
  end: number
  /** tokens/s through the whole span x1000; 0 = not measured yet */
  throughputMilli?: number
  /** bytes the node devotes to layers, from its record (0 or absent = not said) */
  memoryBytes?: number
  /** the node runs `--layers auto` (absent = true, as for this node) */
  movable?: boolean
  /** the compute backend its record names */
  backend?: string
  /** the GPU adapter its record names ('' or absent: none said) */
  adapter?: string
}

export interface SwarmViewInit {
  /** payload bytes of each decoder layer (its length is the layer count) */
  layerBytes: readonly number[]
  /** live spans of the model, this node's own included or not */
  spans: readonly SwarmSpan[]
  /** this node's peer id */
  self: string
  /** bytes this node can devote to layers (config memoryBytes or os.freemem()) */
  memoryBytes: number
  /** connected peers that announce no span of the model: planned as nodes too */
  idlePeers?: readonly string[]
}

/** One planner node and where its figures come from. */
export interface SwarmNode extends PlannerNode {
  /** its live span, if it serves one */
  span?: Span
  /** speed not measured: the mean of the others (or 1) */
  speedEstimated: boolean
  /** memory not announced: this node's memory assumed */
  memoryEstimated: boolean
  /** the backend and GPU adapter its record names */
  backend?: string
  adapter?: string
}

export interface SwarmView {
  shape: ModelShape
  /** in peer-id order */
  nodes: SwarmNode[]
  /** the live spans, one per node that serves */
  current: SpanAssignment[]
}

function metricsJson (m: PlanMetrics): MetricsJson {
  return { bottleneckLayer: m.bottleneckLayer, bottleneckTokensPerSecond: m.bottleneck, minHolders: m.minHolders, replicasMet: m.replicasMet, uncoveredLayers: m.uncoveredLayers, throughputBound: m.throughputBound }
}

function bytesOf (layerBytes: readonly number[], span: Span): number {
  let sum = 0
  for (let l = span.start; l < span.end; l++) {
    sum += layerBytes[l]
  }
  return sum
}

/** Code-unit order of peer id strings (the order every node plans in). */
function compareIds (a: string, b: string): number {
  if (a === b) {
    return 0
  }
  return a < b ? -1 : 1
}

/** What one live span says of its node: the span, its speed, its memory and whether it may move (when announced). */
interface PeerFigures {
  span?: Span
  speed?: number
  memoryBytes?: number
  pinned?: boolean
  backend?: string
  adapter?: string
}

function peerFigures (shape: ModelShape, s: SwarmSpan, self: boolean): PeerFigures {
  const span = { start: s.start, end: s.end }
  const milli = s.throughputMilli ?? 0
  const memory = s.memoryBytes ?? 0
  return {
    span,
    ...(Number.isFinite(milli) && milli > 0 ? { speed: speedFromSpanThroughput(shape, span, milli / 1000) } : {}),
    // this node's own figures come from its config, not its record
    ...(!self && Number.isSafeInteger(memory) && memory > 0 ? { memoryBytes: memory } : {}),
    ...(!self && s.movable === false ? { pinned: true } : {}),
    ...(s.backend != null && s.backend !== '' ? { backend: s.backend } : {}),
    ...(s.adapter != null && s.adapter !== '' ? { adapter: s.adapter } : {})
  }
}

/** The planner's view of the swarm (see the file comment). */
export function swarmView (init: SwarmViewInit): SwarmView {
  const layers = init.layerBytes.length
  if (layers < 1 || init.layerBytes.some(b => !Number.isFinite(b) || b <= 0)) {
    throw new MeshError(MeshErrorCode.BAD_SPAN, 'the model needs at least one decoder layer, each of a positive size')
  }
  if (!Number.isFinite(init.memoryBytes) || init.memoryBytes <= 0) {
    throw new MeshError(MeshErrorCode.BAD_SPAN, `memoryBytes must be a positive number, got ${init.memoryBytes}`)
  }
  const shape: ModelShape = { layers, memoryBytes: init.layerBytes }
  const byPeer = new Map<string, PeerFigures>()
  for (const s of init.spans) {
    const id = s.peerId.toString()
    if (byPeer.has(id) || !Number.isSafeInteger(s.start) || !Number.isSafeInteger(s.end) || s.start < 0 || s.end <= s.start || s.end > layers) {
      continue
    }
    byPeer.set(id, peerFigures(shape, s, id === init.self))
  }
  for (const id of [init.self, ...(init.idlePeers ?? [])]) {
    if (!byPeer.has(id)) {
      byPeer.set(id, {})
    }
  }
  const known = [...byPeer.values()].flatMap(p => p.speed != null ? [p.speed] : [])
  const meanSpeed = known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : 1
  const nodes: SwarmNode[] = [...byPeer].sort(([a], [b]) => compareIds(a, b)).map(([id, p]) => ({
    id,
    memoryBytes: Math.max(p.memoryBytes ?? init.memoryBytes, p.span != null ? bytesOf(init.layerBytes, p.span) : 0),
    speed: p.speed ?? meanSpeed,
    speedEstimated: p.speed == null,
    memoryEstimated: p.memoryBytes == null && id !== init.self,
    ...(p.pinned === true ? { pinned: true } : {}),
    ...(p.span != null ? { span: p.span } : {}),
    ...(p.backend != null ? { backend: p.backend } : {}),
    ...(p.adapter != null ? { adapter: p.adapter } : {})
  }))
  const current = nodes.flatMap(n => n.span != null ? [{ id: n.id, ...n.span }] : [])
  return { shape, nodes, current }
}

/** The span `--layers auto` serves (see the file comment); throws ERR_MESH_BAD_SPAN when memory holds no layer. */
export function chooseAutoSpan (init: SwarmViewInit, options: { replicas?: number } = {}): Span {
  const view = swarmView({ ...init, spans: init.spans.filter(s => s.peerId.toString() !== init.self) })
  const replicas = options.replicas ?? 1
  const spans = view.current.length === 0
    ? planPartition(view.shape, view.nodes, { replicas }).spans
    : rebalance(view.shape, view.current, view.nodes.filter(n => n.span != null || n.id === init.self), { replicas, maxMoves: 0 }).spans
  const mine = spans.find(s => s.id === init.self)
  if (mine == null) {
    const smallest = Math.min(...init.layerBytes)
    throw new MeshError(MeshErrorCode.BAD_SPAN, `--layers auto: ${init.memoryBytes} bytes of memory cannot hold one layer of this model (the smallest takes ${smallest}); set memoryBytes or give --layers START-END`)
  }
  return { start: mine.start, end: mine.end }
}

/** `blyd plan`: coverage now, the bottleneck, and what the planner would do. */
export function planSwarm (init: SwarmViewInit, options: { replicas?: number } = {}): SwarmPlanReport {
  const view = swarmView(init)
  const replicas = options.replicas ?? 1
  const now = evaluatePlan(view.shape, view.nodes, view.current, { replicas })
  const holders: string[][] = Array.from({ length: view.shape.layers }, () => [])
  for (const s of view.current) {
    for (let l = s.start; l < s.end; l++) {
      holders[l].push(s.id)
    }
  }
  const moved = rebalance(view.shape, view.current, view.nodes, { replicas })
  const fresh = planPartition(view.shape, view.nodes, { replicas })
  return {
    layers: view.shape.layers,
    replicas,
    nodes: view.nodes.map(n => ({ peerId: n.id, start: n.span?.start ?? null, end: n.span?.end ?? null, memoryBytes: n.memoryBytes, memoryEstimated: n.memoryEstimated, speed: n.speed, speedEstimated: n.speedEstimated, pinned: n.pinned === true, self: n.id === init.self, backend: n.backend ?? null, adapter: n.adapter ?? null })),
    coverage: holders.map((h, layer) => ({ layer, holders: h, tokensPerSecond: now.layerThroughput[layer] })),
    current: metricsJson(now),
    moves: moved.moves,
    afterMoves: metricsJson(moved.after),
    proposed: { spans: fresh.spans, metrics: metricsJson(fresh.metrics) }
  }
}
