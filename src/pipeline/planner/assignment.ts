/**
 * A mutable assignment of spans to nodes with per-layer holder counts and
 * throughputs kept up to date, its objective key, and the best single-node
 * placement ("best response") given every other node's span.
 *
 * Cost model: a node of speed v holding [s, e) passes v / compute(s, e)
 * tokens/s through its span, and each layer of the span sees that
 * throughput; a layer's throughput is the sum over its holders; the swarm's
 * end-to-end throughput is the lowest layer throughput (the bottleneck).
 */
import { PLANNER_DEFAULTS } from './constants.ts'
import type { LayerModel } from './layer-model.ts'
import type { PlannerNode, Span } from './types.ts'

/** The objective, compared lexicographically: more is better except atMin. */
export interface PlanKey {
  /** min over layers of min(holders, replicas) */
  minCov: number
  /** sum over layers of min(holders, replicas) */
  sumCov: number
  /** lowest layer throughput */
  bottleneck: number
  /** layers at the bottleneck (fewer is better: the next moves can lift it) */
  atMin: number
}

const EPS = PLANNER_DEFAULTS.epsilon

function sameThroughput (a: number, b: number): boolean {
  return Math.abs(a - b) <= EPS * Math.max(Math.abs(a), Math.abs(b), 1e-300)
}

/** > 0 when `a` is better than `b`, < 0 when worse, 0 when equal. */
export function compareKeys (a: PlanKey, b: PlanKey): number {
  if (a.minCov !== b.minCov) {
    return a.minCov - b.minCov
  }
  if (a.sumCov !== b.sumCov) {
    return a.sumCov - b.sumCov
  }
  if (!sameThroughput(a.bottleneck, b.bottleneck)) {
    return a.bottleneck > b.bottleneck ? 1 : -1
  }
  return b.atMin - a.atMin
}

export class Assignment {
  readonly model: LayerModel
  readonly nodes: readonly PlannerNode[]
  readonly replicas: number
  /** per node: start layer, -1 when the node holds nothing */
  readonly starts: Int32Array
  readonly ends: Int32Array
  readonly holders: Int32Array
  readonly throughput: Float64Array
  /** spans scored by bestResponse so far (the search's work meter) */
  evaluations: number

  constructor (model: LayerModel, nodes: readonly PlannerNode[], replicas: number) {
    this.model = model
    this.nodes = nodes
    this.replicas = replicas
    this.starts = new Int32Array(nodes.length).fill(-1)
    this.ends = new Int32Array(nodes.length).fill(-1)
    this.holders = new Int32Array(model.layers)
    this.throughput = new Float64Array(model.layers)
    this.evaluations = 0
  }

  /** tokens/s node i passes through [start, end) */
  rate (i: number, start: number, end: number): number {
    return this.nodes[i].speed / this.model.computeOf(start, end)
  }

  span (i: number): Span | undefined {
    return this.starts[i] < 0 ? undefined : { start: this.starts[i], end: this.ends[i] }
  }

  place (i: number, start: number, end: number): void {
    this.clear(i)
    const rate = this.rate(i, start, end)
    for (let l = start; l < end; l++) {
      this.holders[l]++
      this.throughput[l] += rate
    }
    this.starts[i] = start
    this.ends[i] = end
  }

  clear (i: number): void {
    const start = this.starts[i]
    if (start < 0) {
      return
    }
    const end = this.ends[i]
    const rate = this.rate(i, start, end)
    for (let l = start; l < end; l++) {
      this.holders[l]--
      this.throughput[l] = this.holders[l] === 0 ? 0 : this.throughput[l] - rate
    }
    this.starts[i] = -1
    this.ends[i] = -1
  }

  /** Recompute holders and throughputs from the spans (drops float drift of many place/clear). */
  refresh (): void {
    this.holders.fill(0)
    this.throughput.fill(0)
    for (let i = 0; i < this.nodes.length; i++) {
      const start = this.starts[i]
      if (start < 0) {
        continue
      }
      const rate = this.rate(i, start, this.ends[i])
      for (let l = start; l < this.ends[i]; l++) {
        this.holders[l]++
        this.throughput[l] += rate
      }
    }
  }

  key (): PlanKey {
    let minCov = Infinity
    let sumCov = 0
    let bottleneck = Infinity
    for (let l = 0; l < this.model.layers; l++) {
      const c = Math.min(this.holders[l], this.replicas)
      minCov = Math.min(minCov, c)
      sumCov += c
      bottleneck = Math.min(bottleneck, this.throughput[l])
    }
    let atMin = 0
    for (let l = 0; l < this.model.layers; l++) {
      if (this.throughput[l] <= bottleneck * (1 + EPS)) {
        atMin++
      }
    }
    return { minCov, sumCov, bottleneck, atMin }
  }

  /**
   * The best span for node i given every other node's span (node i must be
   * cleared), with the key the assignment would then have; `prefer` wins
   * ties. Undefined when the node cannot hold even one layer anywhere.
   */
  bestResponse (i: number, prefer?: Span): { span: Span, key: PlanKey } | undefined {
    const L = this.model.layers
    const R = this.replicas
    const h = this.holders
    const t = this.throughput
    // outside the candidate span: prefix / suffix minima of capped coverage and throughput
    const preCov = new Float64Array(L + 1).fill(Infinity)
    const preT = new Float64Array(L + 1).fill(Infinity)
    const sufCov = new Float64Array(L + 1).fill(Infinity)
    const sufT = new Float64Array(L + 1).fill(Infinity)
    const gain = new Int32Array(L + 1)
    let baseCov = 0
    for (let l = 0; l < L; l++) {
      preCov[l + 1] = Math.min(preCov[l], Math.min(h[l], R))
      preT[l + 1] = Math.min(preT[l], t[l])
      gain[l + 1] = gain[l] + (h[l] < R ? 1 : 0)
      baseCov += Math.min(h[l], R)
    }
    for (let l = L - 1; l >= 0; l--) {
      sufCov[l] = Math.min(sufCov[l + 1], Math.min(h[l], R))
      sufT[l] = Math.min(sufT[l + 1], t[l])
    }
    const memory = this.nodes[i].memoryBytes
    let best: { span: Span, key: PlanKey } | undefined
    const atMinOf = (start: number, end: number, rate: number, bottleneck: number): number => {
      const limit = bottleneck * (1 + EPS)
      let n = 0
      for (let l = 0; l < L; l++) {
        const v = l >= start && l < end ? t[l] + rate : t[l]
        if (v <= limit) {
          n++
        }
      }
      return n
    }
    for (let s = 0; s < L; s++) {
      const maxEnd = this.model.maxEnd(s, memory)
      let inCov = Infinity
      let inT = Infinity
      const inside: Array<[number, number]> = []
      for (let e = s + 1; e <= maxEnd; e++) {
        inCov = Math.min(inCov, Math.min(h[e - 1] + 1, R))
        inT = Math.min(inT, t[e - 1])
        inside.push([inCov, inT])
      }
      // longest first: on a tie the longer span keeps more layers replicated for failover
      this.evaluations += maxEnd - s
      for (let e = maxEnd; e > s; e--) {
        const [cIn, tIn] = inside[e - s - 1]
        const rate = this.rate(i, s, e)
        const partial = {
          minCov: Math.min(preCov[s], sufCov[e], cIn),
          sumCov: baseCov + gain[e] - gain[s],
          bottleneck: Math.min(preT[s], sufT[e], tIn + rate),
          atMin: 0
        }
        if (best != null) {
          const head = compareKeys({ ...partial, atMin: 0 }, { ...best.key, atMin: 0 })
          if (head < 0) {
            continue
          }
        }
        partial.atMin = atMinOf(s, e, rate, partial.bottleneck)
        const isPreferred = prefer != null && prefer.start === s && prefer.end === e
        const cmp = best == null ? 1 : compareKeys(partial, best.key)
        if (cmp > 0 || (cmp === 0 && isPreferred)) {
          best = { span: { start: s, end: e }, key: partial }
        }
      }
    }
    return best
  }
}
