/**
 * planPartition: chooses one contiguous span per node so that every layer
 * has `replicas` holders where memory allows, then the bottleneck layer's
 * throughput is as high as local search finds. See docs/planner.md.
 *
 * Two starting points, each improved by best-response passes (every node in
 * turn moves to the span that is best given all others, as long as the
 * objective strictly improves) and pair moves; the better result wins.
 * Tracks: nodes, most memory first, are laid end to end over the layers
 * `replicas` times ("next fit"), which reaches R-fold coverage whenever the
 * nodes' layer slots sum to R * (L + largest span - 1) or more; the nodes
 * left over are placed greedily. Greedy: nodes, fastest first, each take
 * their best response (Petals' block selection: the window the swarm needs
 * most). Small swarms then get perturbation rounds (see perturb).
 */
import { Prng } from '../../model/prng.ts'
import { Assignment, compareKeys } from './assignment.ts'
import { PLANNER_DEFAULTS } from './constants.ts'
import { PlannerError, PlannerErrorCode } from './errors.ts'
import { checkNodes, checkReplicas, LayerModel } from './layer-model.ts'
import { metricsOf, spansOf } from './metrics.ts'
import type { PlanKey } from './assignment.ts'
import type { ModelShape, Plan, PlannerNode, PlanOptions, Span } from './types.ts'

/** Best-response passes until no node moves (or maxPasses); returns true when anything moved. */
export function improve (a: Assignment, maxPasses: number, order?: readonly number[]): boolean {
  const nodes = order ?? a.nodes.map((_, i) => i)
  let movedAny = false
  for (let pass = 0; pass < maxPasses; pass++) {
    let moved = false
    for (const i of nodes) {
      const current = a.span(i)
      const before = a.key()
      a.clear(i)
      const best = a.bestResponse(i, current)
      if (best == null) {
        continue
      }
      const changed = current == null || best.span.start !== current.start || best.span.end !== current.end
      if (changed && compareKeys(best.key, before) > 0) {
        a.place(i, best.span.start, best.span.end)
        moved = true
      } else if (current != null) {
        a.place(i, current.start, current.end)
      }
    }
    a.refresh()
    movedAny ||= moved
    if (!moved) {
      break
    }
  }
  return movedAny
}

/**
 * Pair moves: for each pair of nodes, every span of the first with the best
 * response of the second; applies a pair move when the objective strictly
 * improves, then best-response passes again. Stops after `budget` span
 * evaluations, so it runs in full only on small swarms, where single moves
 * get stuck most.
 */
export function improvePairs (a: Assignment, maxPasses: number, budget: number): void {
  const n = a.nodes.length
  const stopAt = a.evaluations + budget
  let moved = true
  while (moved && a.evaluations < stopAt) {
    moved = false
    for (let i = 0; i < n && a.evaluations < stopAt; i++) {
      for (let j = 0; j < n && a.evaluations < stopAt; j++) {
        if (i !== j && a.starts[i] >= 0 && a.starts[j] >= 0 && tryPair(a, i, j)) {
          improve(a, maxPasses)
          moved = true
        }
      }
    }
  }
}

/** Moves nodes i and j jointly when that strictly improves the objective; true when it did. */
function tryPair (a: Assignment, i: number, j: number): boolean {
  const before = a.key()
  const si = a.span(i) as Span
  const sj = a.span(j) as Span
  a.clear(i)
  a.clear(j)
  let best: { si: Span, sj: Span, key: PlanKey } | undefined
  for (let s = 0; s < a.model.layers; s++) {
    const maxEnd = a.model.maxEnd(s, a.nodes[i].memoryBytes)
    for (let e = s + 1; e <= maxEnd; e++) {
      a.place(i, s, e)
      const r = a.bestResponse(j)
      if (r != null && (best == null || compareKeys(r.key, best.key) > 0)) {
        best = { si: { start: s, end: e }, sj: r.span, key: r.key }
      }
      a.clear(i)
    }
  }
  const better = best != null && compareKeys(best.key, before) > 0
  const pick = better ? best as { si: Span, sj: Span } : { si, sj }
  a.place(i, pick.si.start, pick.si.end)
  a.place(j, pick.sj.start, pick.sj.end)
  a.refresh()
  return better
}

/**
 * Iterated local search: `rounds` times, either lay the nodes out as tracks
 * in a random order (even rounds; reaches R-fold coverage by another path)
 * or re-place a third of the nodes of the best assignment at random spans
 * (odd rounds), improve, and keep the result when strictly better. The PRNG
 * has a fixed seed: the same input always gives the same plan.
 */
function perturb (start: Assignment, rounds: number, maxPasses: number, pairBudget: number, budget: number): Assignment {
  const rng = new Prng(PLANNER_DEFAULTS.seed)
  const n = start.nodes.length
  let best = start
  let bestKey = best.key()
  let spent = 0
  for (let round = 0; round < rounds && spent < budget; round++) {
    const a = new Assignment(best.model, best.nodes, best.replicas)
    if (round % 2 === 0) {
      const order = a.nodes.map((_, i) => i)
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng.next() * (i + 1))
        const x = order[i]
        order[i] = order[j]
        order[j] = x
      }
      tracks(a, order)
    } else {
      for (let i = 0; i < n; i++) {
        if (best.starts[i] >= 0) {
          a.place(i, best.starts[i], best.ends[i])
        }
      }
      const k = Math.max(1, Math.ceil(n / 3))
      for (let m = 0; m < k; m++) {
        const i = Math.floor(rng.next() * n)
        const s = Math.floor(rng.next() * a.model.layers)
        const maxEnd = a.model.maxEnd(s, a.nodes[i].memoryBytes)
        if (maxEnd > s) {
          a.place(i, s, s + 1 + Math.floor(rng.next() * (maxEnd - s)))
        }
      }
      a.refresh()
    }
    improve(a, maxPasses)
    improvePairs(a, maxPasses, pairBudget)
    spent += a.evaluations
    const key = a.key()
    if (compareKeys(key, bestKey) > 0) {
      best = a
      bestKey = key
    }
  }
  return best
}

function byMemory (a: Assignment): number[] {
  return a.nodes.map((_, i) => i).sort((x, y) => a.nodes[y].memoryBytes - a.nodes[x].memoryBytes || a.nodes[y].speed - a.nodes[x].speed || x - y)
}

function bySpeed (a: Assignment): number[] {
  return a.nodes.map((_, i) => i).sort((x, y) => a.nodes[y].speed - a.nodes[x].speed || a.nodes[y].memoryBytes - a.nodes[x].memoryBytes || x - y)
}

function placeGreedy (a: Assignment, order: readonly number[]): void {
  for (const i of order) {
    if (a.starts[i] >= 0) {
      continue
    }
    const best = a.bestResponse(i)
    if (best != null) {
      a.place(i, best.span.start, best.span.end)
    }
  }
}

function tracks (a: Assignment, order: readonly number[]): void {
  let track = 0
  let p = 0
  for (const i of order) {
    if (track >= a.replicas) {
      break
    }
    const end = a.model.maxEnd(p, a.nodes[i].memoryBytes)
    if (end === p) {
      continue
    }
    a.place(i, p, end)
    p = end
    if (p === a.model.layers) {
      track++
      p = 0
    }
  }
  placeGreedy(a, bySpeed(a))
}

/** Choose a span for every node (see the file comment). Throws ERR_PLANNER_INVALID_ARGUMENT on bad input. */
export function planPartition (shape: ModelShape, nodes: readonly PlannerNode[], options: PlanOptions = {}): Plan {
  const model = new LayerModel(shape)
  checkNodes(model, nodes)
  const replicas = checkReplicas(options.replicas ?? PLANNER_DEFAULTS.replicas)
  const maxPasses = options.maxPasses ?? PLANNER_DEFAULTS.maxPasses
  if (!Number.isSafeInteger(maxPasses) || maxPasses < 0) {
    throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `maxPasses must be a whole number >= 0, got ${maxPasses}`)
  }
  const pairBudget = options.pairBudget ?? PLANNER_DEFAULTS.pairBudget
  const restarts = options.restarts ?? PLANNER_DEFAULTS.restarts
  const candidates: Assignment[] = []
  const first = new Assignment(model, nodes, replicas)
  tracks(first, byMemory(first))
  improve(first, maxPasses)
  improvePairs(first, maxPasses, pairBudget)
  candidates.push(first)
  const second = new Assignment(model, nodes, replicas)
  placeGreedy(second, bySpeed(second))
  improve(second, maxPasses)
  improvePairs(second, maxPasses, pairBudget)
  candidates.push(second)
  let best = candidates[0]
  for (const c of candidates.slice(1)) {
    if (compareKeys(c.key(), best.key()) > 0) {
      best = c
    }
  }
  if (nodes.length <= PLANNER_DEFAULTS.smallSwarm) {
    best = perturb(best, restarts, maxPasses, pairBudget, PLANNER_DEFAULTS.searchBudget)
  }
  return {
    spans: spansOf(best),
    idle: nodes.filter((_, i) => best.starts[i] < 0).map(n => n.id),
    metrics: metricsOf(best)
  }
}
