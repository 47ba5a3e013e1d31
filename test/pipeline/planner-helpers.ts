/**
 * Test helpers of the planner specs: random swarms from the seeded PRNG and
 * an exhaustive search over every span assignment (small cases only).
 */
import { Prng } from '../../src/model/prng.ts'
import type { ModelShape, PlannerNode } from '../../src/pipeline/planner/index.ts'

export const LAYER_BYTES = 1000

/** An integer in [lo, hi]. */
export function randInt (rng: Prng, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1))
}

/** `n` nodes with memory for minLayers..maxLayers uniform layers and speeds varying 10x. */
export function randomNodes (rng: Prng, n: number, minLayers: number, maxLayers: number, prefix = 'n'): PlannerNode[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    memoryBytes: randInt(rng, minLayers, maxLayers) * LAYER_BYTES + randInt(rng, 0, LAYER_BYTES - 1),
    speed: 10 + Math.round(rng.next() * 90)
  }))
}

export interface ExhaustiveBest {
  minCov: number
  sumCov: number
  bottleneck: number
}

/**
 * The best (minCov, sumCov, bottleneck) over every assignment of one
 * non-empty span per node (holding nothing never helps: a span only adds
 * holders and throughput). Nodes that fit no layer hold nothing.
 */
export function exhaustiveBest (model: ModelShape, nodes: readonly PlannerNode[], replicas: number): ExhaustiveBest {
  const L = model.layers
  const mem = typeof model.memoryBytes === 'number' ? Array<number>(L).fill(model.memoryBytes) : [...model.memoryBytes]
  const compute = model.compute ?? 1
  const cost = typeof compute === 'number' ? Array<number>(L).fill(compute) : [...compute]
  const options = nodes.map(node => {
    const spans: Array<[number, number, number]> = []
    for (let s = 0; s < L; s++) {
      let m = 0
      let c = 0
      for (let e = s + 1; e <= L; e++) {
        m += mem[e - 1]
        c += cost[e - 1]
        if (m > node.memoryBytes) {
          break
        }
        spans.push([s, e, node.speed / c])
      }
    }
    return spans
  })
  const holders = new Array<number>(L).fill(0)
  const thr = new Array<number>(L).fill(0)
  let best: ExhaustiveBest = { minCov: -1, sumCov: -1, bottleneck: -1 }
  const visit = (k: number): void => {
    if (k === nodes.length) {
      let minCov = Infinity
      let sumCov = 0
      let bottleneck = Infinity
      for (let l = 0; l < L; l++) {
        const c = Math.min(holders[l], replicas)
        minCov = Math.min(minCov, c)
        sumCov += c
        bottleneck = Math.min(bottleneck, thr[l])
      }
      if (minCov > best.minCov || (minCov === best.minCov && (sumCov > best.sumCov || (sumCov === best.sumCov && bottleneck > best.bottleneck)))) {
        best = { minCov, sumCov, bottleneck }
      }
      return
    }
    if (options[k].length === 0) {
      visit(k + 1)
      return
    }
    for (const [s, e, rate] of options[k]) {
      for (let l = s; l < e; l++) {
        holders[l]++
        thr[l] += rate
      }
      visit(k + 1)
      for (let l = s; l < e; l++) {
        holders[l]--
        thr[l] = holders[l] === 0 ? 0 : thr[l] - rate
      }
    }
  }
  visit(0)
  return best
}
