/**
 * The model and the nodes as the planner computes with them: prefix sums of
 * per-layer memory and compute cost, so the memory and the compute cost of
 * any span are O(1), and validated node records.
 */
import { PlannerError, PlannerErrorCode } from './errors.ts'
import type { ModelShape, PlannerNode, Span } from './types.ts'

function invalid (message: string): PlannerError {
  return new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, message)
}

function perLayer (value: number | readonly number[] | undefined, layers: number, fallback: number, what: string): Float64Array {
  const prefix = new Float64Array(layers + 1)
  const list = value ?? fallback
  if (typeof list !== 'number' && (!Array.isArray(list) || list.length !== layers)) {
    throw invalid(`${what} must be a number or an array of ${layers} numbers`)
  }
  for (let l = 0; l < layers; l++) {
    const v = typeof list === 'number' ? list : list[l]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw invalid(`${what} of layer ${l} must be a finite number >= 0, got ${String(v)}`)
    }
    prefix[l + 1] = prefix[l] + v
  }
  return prefix
}

/** A validated model shape with O(1) span memory and compute cost. */
export class LayerModel {
  readonly layers: number
  private readonly memory: Float64Array
  private readonly cost: Float64Array

  constructor (shape: ModelShape) {
    if (shape == null || !Number.isSafeInteger(shape.layers) || shape.layers < 1) {
      throw invalid(`a model needs a whole number of layers >= 1, got ${String(shape?.layers)}`)
    }
    this.layers = shape.layers
    this.memory = perLayer(shape.memoryBytes, shape.layers, 0, 'memoryBytes')
    this.cost = perLayer(shape.compute, shape.layers, 1, 'compute')
    for (let l = 0; l < this.layers; l++) {
      if (!(this.cost[l + 1] > this.cost[l])) {
        throw invalid(`compute of layer ${l} must be > 0`)
      }
    }
  }

  /** bytes the span [start, end) needs */
  memoryOf (start: number, end: number): number {
    return this.memory[end] - this.memory[start]
  }

  /** compute cost of the span [start, end) */
  computeOf (start: number, end: number): number {
    return this.cost[end] - this.cost[start]
  }

  /** total compute cost of the model */
  get totalCompute (): number {
    return this.cost[this.layers]
  }

  /** the largest end such that [start, end) fits in `budget` bytes (start itself when not even one layer fits) */
  maxEnd (start: number, budget: number): number {
    let lo = start
    let hi = this.layers
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.memory[mid] - this.memory[start] <= budget) {
        lo = mid
      } else {
        hi = mid - 1
      }
    }
    return lo
  }

  /** the most layers a node with `budget` bytes can hold (over every start) */
  maxSlots (budget: number): number {
    let best = 0
    for (let s = 0; s < this.layers; s++) {
      best = Math.max(best, this.maxEnd(s, budget) - s)
    }
    return best
  }

  /** true when `span` is a non-empty range inside the model */
  isSpan (span: Span): boolean {
    return Number.isSafeInteger(span?.start) && Number.isSafeInteger(span?.end) && span.start >= 0 && span.end > span.start && span.end <= this.layers
  }
}

/** Throws unless `nodes` are well formed with unique ids; returns them unchanged. */
export function checkNodes (model: LayerModel, nodes: readonly PlannerNode[]): readonly PlannerNode[] {
  if (!Array.isArray(nodes)) {
    throw invalid('nodes must be an array')
  }
  const seen = new Set<string>()
  for (const node of nodes) {
    if (typeof node?.id !== 'string' || node.id === '') {
      throw invalid('every node needs a non-empty string id')
    }
    if (seen.has(node.id)) {
      throw invalid(`node ${node.id} is listed twice`)
    }
    seen.add(node.id)
    if (!Number.isFinite(node.memoryBytes) || node.memoryBytes < 0) {
      throw invalid(`node ${node.id}: memoryBytes must be a finite number >= 0`)
    }
    if (!Number.isFinite(node.speed) || node.speed < 0) {
      throw invalid(`node ${node.id}: speed must be a finite number >= 0`)
    }
  }
  return nodes
}

/** Throws unless `replicas` is a whole number >= 1. */
export function checkReplicas (replicas: number): number {
  if (!Number.isSafeInteger(replicas) || replicas < 1) {
    throw invalid(`replicas must be a whole number >= 1, got ${replicas}`)
  }
  return replicas
}

/**
 * A node's speed (layer·tokens/s at compute cost 1) from the tokens/s it
 * announces through its span (LiveSpan.throughputMilli / 1000).
 */
export function speedFromSpanThroughput (shape: ModelShape | LayerModel, span: Span, tokensPerSecond: number): number {
  const model = shape instanceof LayerModel ? shape : new LayerModel(shape)
  if (!model.isSpan(span)) {
    throw invalid(`span [${span?.start}, ${span?.end}) is not inside the model's ${model.layers} layers`)
  }
  if (!Number.isFinite(tokensPerSecond) || tokensPerSecond < 0) {
    throw invalid('tokensPerSecond must be a finite number >= 0')
  }
  return tokensPerSecond * model.computeOf(span.start, span.end)
}
