/**
 * Scores an assignment: per-layer holders and throughput, the bottleneck,
 * replica coverage, and the bounds no assignment of the same nodes can beat.
 */
import { Assignment } from './assignment.ts'
import { PLANNER_DEFAULTS } from './constants.ts'
import { PlannerError, PlannerErrorCode } from './errors.ts'
import { checkNodes, checkReplicas, LayerModel } from './layer-model.ts'
import type { ModelShape, PlannerNode, PlanMetrics, SpanAssignment } from './types.ts'

/** Metrics of an Assignment (recomputed from its spans, free of float drift). */
export function metricsOf (a: Assignment): PlanMetrics {
  a.refresh()
  const L = a.model.layers
  const R = a.replicas
  const holders = Array.from(a.holders)
  const layerThroughput = Array.from(a.throughput)
  let bottleneck = Infinity
  let bottleneckLayer = 0
  for (let l = 0; l < L; l++) {
    if (layerThroughput[l] < bottleneck) {
      bottleneck = layerThroughput[l]
      bottleneckLayer = l
    }
  }
  const shortLayers = holders.flatMap((h, l) => h < R ? [l] : [])
  let speed = 0
  let slots = 0
  for (const node of a.nodes) {
    speed += node.speed
    slots += a.model.maxSlots(node.memoryBytes)
  }
  return {
    replicas: R,
    holders,
    layerThroughput,
    bottleneck,
    bottleneckLayer,
    minHolders: Math.min(...holders),
    coveredSlots: holders.reduce((sum, h) => sum + Math.min(h, R), 0),
    replicasMet: shortLayers.length === 0,
    shortLayers,
    uncoveredLayers: holders.flatMap((h, l) => h === 0 ? [l] : []),
    throughputBound: speed / a.model.totalCompute,
    replicasBound: Math.min(R, Math.floor(slots / L))
  }
}

/**
 * Loads `spans` onto an Assignment. Throws ERR_PLANNER_INVALID_ARGUMENT for a
 * span of an unknown node, a node listed twice, or a span that is outside
 * the model or does not fit the node's memory.
 */
export function loadAssignment (model: LayerModel, nodes: readonly PlannerNode[], spans: readonly SpanAssignment[], replicas: number, options: { ignoreUnknown?: boolean } = {}): Assignment {
  const a = new Assignment(model, nodes, replicas)
  const index = new Map(nodes.map((n, i) => [n.id, i]))
  for (const span of spans) {
    const i = index.get(span?.id)
    if (i == null) {
      if (options.ignoreUnknown === true) {
        continue
      }
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `span of unknown node ${String(span?.id)}`)
    }
    if (a.starts[i] >= 0) {
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `node ${span.id} has two spans`)
    }
    if (!model.isSpan(span)) {
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `node ${span.id}: span [${span.start}, ${span.end}) is not inside the model's ${model.layers} layers`)
    }
    if (model.memoryOf(span.start, span.end) > nodes[i].memoryBytes) {
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `node ${span.id}: span [${span.start}, ${span.end}) needs ${model.memoryOf(span.start, span.end)} bytes, the node has ${nodes[i].memoryBytes}`)
    }
    a.place(i, span.start, span.end)
  }
  return a
}

/** Scores a given assignment of spans to nodes (e.g. the live swarm's). */
export function evaluatePlan (shape: ModelShape, nodes: readonly PlannerNode[], spans: readonly SpanAssignment[], options: { replicas?: number } = {}): PlanMetrics {
  const model = new LayerModel(shape)
  checkNodes(model, nodes)
  const replicas = checkReplicas(options.replicas ?? PLANNER_DEFAULTS.replicas)
  return metricsOf(loadAssignment(model, nodes, spans, replicas))
}

/** The spans of an Assignment, in node order. */
export function spansOf (a: Assignment): SpanAssignment[] {
  const out: SpanAssignment[] = []
  for (let i = 0; i < a.nodes.length; i++) {
    if (a.starts[i] >= 0) {
      out.push({ id: a.nodes[i].id, start: a.starts[i], end: a.ends[i] })
    }
  }
  return out
}
