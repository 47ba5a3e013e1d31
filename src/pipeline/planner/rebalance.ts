/**
 * rebalance: what should change in a live swarm. Departed nodes drop their
 * spans; nodes without a span (joins) and nodes whose span no longer fits
 * their memory (refits) take their best span, largest first. Then up to
 * `maxMoves` balance moves: the single-node move with the best resulting
 * objective, accepted only when it raises replica coverage (min holders,
 * then covered slots) or, coverage equal, raises the bottleneck throughput
 * by more than `minGain` (15% by default) — moving a node costs a reload of
 * its layers, so small gains are not worth it (Petals' balance_quality) —
 * and never when a layer would lose its last holder.
 */
import { PLANNER_DEFAULTS } from './constants.ts'
import { PlannerError, PlannerErrorCode } from './errors.ts'
import { checkNodes, checkReplicas, LayerModel } from './layer-model.ts'
import { loadAssignment, metricsOf, spansOf } from './metrics.ts'
import type { Assignment, PlanKey } from './assignment.ts'
import type { ModelShape, Move, PlannerNode, RebalanceOptions, RebalanceResult, Span, SpanAssignment } from './types.ts'

/** True when moving node i (already cleared) from `from` to `to` leaves a layer of `from` with no holder. */
function dropsLastHolder (a: Assignment, from: Span, to: Span): boolean {
  for (let l = from.start; l < from.end; l++) {
    if ((l < to.start || l >= to.end) && a.holders[l] === 0) {
      return true
    }
  }
  return false
}

function worthIt (next: PlanKey, now: PlanKey, minGain: number): boolean {
  if (next.minCov !== now.minCov) {
    return next.minCov > now.minCov
  }
  if (next.sumCov !== now.sumCov) {
    return next.sumCov > now.sumCov
  }
  return next.bottleneck > now.bottleneck * (1 + minGain) && next.bottleneck > 0
}

function checkOptions (options: RebalanceOptions): { replicas: number, minGain: number, maxMoves: number } {
  const replicas = checkReplicas(options.replicas ?? PLANNER_DEFAULTS.replicas)
  const minGain = options.minGain ?? PLANNER_DEFAULTS.minGain
  const maxMoves = options.maxMoves ?? PLANNER_DEFAULTS.maxMoves
  if (!Number.isFinite(minGain) || minGain < 0) {
    throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `minGain must be a finite number >= 0, got ${minGain}`)
  }
  if (!Number.isSafeInteger(maxMoves) || maxMoves < 0) {
    throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `maxMoves must be a whole number >= 0, got ${maxMoves}`)
  }
  return { replicas, minGain, maxMoves }
}

/** Splits `current` into spans kept, departures (as moves) and nodes to refit. */
function sortCurrent (model: LayerModel, current: readonly SpanAssignment[], nodes: readonly PlannerNode[]): { kept: SpanAssignment[], moves: Move[], refit: Set<string> } {
  if (!Array.isArray(current)) {
    throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, 'current must be an array of spans')
  }
  const live = new Map(nodes.map(n => [n.id, n]))
  const moves: Move[] = []
  const kept: SpanAssignment[] = []
  const refit = new Set<string>()
  const seen = new Set<string>()
  for (const span of current) {
    if (seen.has(span?.id)) {
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `node ${String(span?.id)} has two spans`)
    }
    seen.add(span?.id)
    if (!model.isSpan(span)) {
      throw new PlannerError(PlannerErrorCode.INVALID_ARGUMENT, `node ${String(span?.id)}: span [${span?.start}, ${span?.end}) is not inside the model's ${model.layers} layers`)
    }
    const node = live.get(span.id)
    if (node == null) {
      moves.push({ id: span.id, from: { start: span.start, end: span.end }, reason: 'leave' })
    } else if (model.memoryOf(span.start, span.end) > node.memoryBytes) {
      refit.add(span.id)
    } else {
      kept.push(span)
    }
  }
  return { kept, moves, refit }
}

/** Places every node without a span, largest first; returns the join / refit moves. */
function placeFresh (a: Assignment, current: readonly SpanAssignment[], refit: Set<string>): Move[] {
  const nodes = a.nodes
  const moves: Move[] = []
  const fresh = nodes.map((n, i) => i)
    .filter(i => a.starts[i] < 0)
    .sort((x, y) => nodes[y].memoryBytes - nodes[x].memoryBytes || nodes[y].speed - nodes[x].speed || x - y)
  for (const i of fresh) {
    const id = nodes[i].id
    const old = refit.has(id) ? current.find(s => s.id === id) : undefined
    const from = old == null ? undefined : { start: old.start, end: old.end }
    const best = a.bestResponse(i)
    if (best != null) {
      a.place(i, best.span.start, best.span.end)
    }
    if (from != null) {
      moves.push(best == null ? { id, from, reason: 'refit' } : { id, from, to: best.span, reason: 'refit' })
    } else if (best != null) {
      moves.push({ id, to: best.span, reason: 'join' })
    }
  }
  return moves
}

function coverageFirst (a: PlanKey, b: PlanKey): boolean {
  if (a.minCov !== b.minCov) {
    return a.minCov > b.minCov
  }
  if (a.sumCov !== b.sumCov) {
    return a.sumCov > b.sumCov
  }
  return a.bottleneck > b.bottleneck
}

/** The best single-node move worth making, if any. */
function bestMove (a: Assignment, minGain: number): { i: number, from: Span, to: Span } | undefined {
  a.refresh()
  const now = a.key()
  let pick: { i: number, from: Span, to: Span, key: PlanKey } | undefined
  for (let i = 0; i < a.nodes.length; i++) {
    const from = a.span(i)
    if (from == null || a.nodes[i].pinned === true) {
      continue
    }
    a.clear(i)
    const best = a.bestResponse(i, from)
    const moves = best != null && (best.span.start !== from.start || best.span.end !== from.end)
    if (best != null && moves && !dropsLastHolder(a, from, best.span) && worthIt(best.key, now, minGain) && (pick == null || coverageFirst(best.key, pick.key))) {
      pick = { i, from, to: best.span, key: best.key }
    }
    a.place(i, from.start, from.end)
  }
  return pick
}

/** Propose moves for the swarm `current` now that its nodes are `nodes` (see the file comment). */
export function rebalance (shape: ModelShape, current: readonly SpanAssignment[], nodes: readonly PlannerNode[], options: RebalanceOptions = {}): RebalanceResult {
  const model = new LayerModel(shape)
  checkNodes(model, nodes)
  const { replicas, minGain, maxMoves } = checkOptions(options)
  const { kept, moves, refit } = sortCurrent(model, current, nodes)
  const a = loadAssignment(model, nodes, kept, replicas)
  const before = metricsOf(loadAssignment(model, nodes, kept, replicas))
  moves.push(...placeFresh(a, current, refit))
  for (let m = 0; m < maxMoves; m++) {
    const move = bestMove(a, minGain)
    if (move == null) {
      break
    }
    a.place(move.i, move.to.start, move.to.end)
    moves.push({ id: a.nodes[move.i].id, from: move.from, to: move.to, reason: 'balance' })
  }
  return { spans: spansOf(a), moves, before, after: metricsOf(a) }
}
