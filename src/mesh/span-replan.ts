/**
 * The periodic re-plan of a `--layers auto` node (decideReplan): should this
 * node move to another span now? Pure, no I/O.
 *
 * It builds the swarm view (swarm-plan.ts) over the live spans, this node's
 * own included, and runs the planner's `rebalance` with one balance move.
 * Peers that announce nothing are left out (they are still choosing: their
 * join is theirs to plan). rebalance proposes the single best move of the
 * whole swarm, accepted only when it raises coverage, or raises the
 * bottleneck by more than `minGain`, and never one that leaves a layer with
 * no holder. This node moves only when that move is its own. Every node of
 * the swarm computes the same view from the same records, so when several
 * could fill the same hole, they agree on one (the planner breaks ties by
 * peer-id order) and the others stay.
 */
import { rebalance } from '../pipeline/planner/index.ts'
import { swarmView } from './swarm-plan.ts'
import type { SwarmViewInit } from './swarm-plan.ts'
import type { Span } from '../pipeline/planner/index.ts'

export type ReplanReason =
  /** a layer gains holders: a hole is filled, or replicas come closer */
  'coverage' |
  /** the bottleneck rises by more than minGain */
  'throughput' |
  /** the best move worth making is another node's */
  'other-node' |
  /** no move is worth making */
  'no-gain' |
  /** this node does not appear among the live spans (its record is not out yet) */
  'not-announced'

export interface ReplanDecision {
  /** this node moves */
  moved: boolean
  /** its span now */
  from?: Span
  /** where it moves (when moved) */
  to?: Span
  /**
   * bottleneck after the proposed move over before, minus 1 (0.2 = 20%
   * more tokens/s); null when the bottleneck was 0 before (a layer had no
   * holder); 0 when nothing moves
   */
  gain: number | null
  reason: ReplanReason
}

export interface ReplanOptions {
  /** holders wanted per layer (default 1) */
  replicas?: number
  /** bottleneck gain a move must pass (default the planner's, 15%) */
  minGain?: number
}

/** Should this node (`init.self`) move? `init.spans` are the live spans, this node's own included. */
export function decideReplan (init: SwarmViewInit, options: ReplanOptions = {}): ReplanDecision {
  const view = swarmView({ ...init, idlePeers: [] })
  const self = view.nodes.find(n => n.id === init.self)
  const from = self?.span
  if (from == null) {
    return { moved: false, gain: 0, reason: 'not-announced' }
  }
  const result = rebalance(view.shape, view.current, view.nodes.filter(n => n.span != null), {
    replicas: options.replicas ?? 1,
    maxMoves: 1,
    ...(options.minGain != null ? { minGain: options.minGain } : {})
  })
  const move = result.moves.find(m => m.reason === 'balance')
  if (move?.to == null) {
    return { moved: false, from, gain: 0, reason: 'no-gain' }
  }
  const { before, after } = result
  const gain = before.bottleneck > 0 ? after.bottleneck / before.bottleneck - 1 : null
  if (move.id !== init.self) {
    return { moved: false, from, gain: 0, reason: 'other-node' }
  }
  const replicas = options.replicas ?? 1
  const coverage = Math.min(after.minHolders, replicas) > Math.min(before.minHolders, replicas) || after.coveredSlots > before.coveredSlots
  return { moved: true, from, to: { start: move.to.start, end: move.to.end }, gain, reason: coverage ? 'coverage' : 'throughput' }
}
