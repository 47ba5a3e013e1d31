/**
 * Route and span planning over the live spans of one model.
 *
 * planRoute: a stage serves exactly its announced span, so a route is a chain
 * of spans whose boundaries meet: [0, a) [a, b) ... [z, L). Among all such
 * chains it picks the one with the fewest hops, then the fewest full stages
 * (no free session), then the lowest summed RTT (a span with unknown RTT
 * counts UNKNOWN_RTT_MS), then the fewest queued requests; remaining ties are
 * broken the same way whatever order the spans come in (they are scanned by
 * start, end, peer id). This is a shortest path over layer boundaries (a
 * later issue weighs compute and queueing as in Petals' Dijkstra).
 *
 * chooseAutoSpan (`--layers auto`): the model is cut into `nodes` equal
 * windows (nodes = the peers known to the swarm plus this one; the last
 * window takes the remainder) and the node takes the window the swarm needs
 * most: the one whose least-held layer has the fewest live holders, then the
 * fewest holders in total. Ties (e.g. no spans known at all) are broken by
 * sha-256(peer id), so nodes starting together spread over the windows
 * deterministically instead of all picking the first.
 */
import { createHash } from 'node:crypto'
import { MeshError, MeshErrorCode } from './errors.ts'

/** What planning reads of a live span (LiveSpan fits). */
export interface PlannedSpan {
  peerId: { toString(): string }
  start: number
  end: number
  rttMs?: number
  queueLength: number
  freeSessions: number
}

/** RTT assumed for a span whose peer could not be pinged */
export const UNKNOWN_RTT_MS = 1000

interface Cost {
  hops: number
  rtt: number
  queue: number
  full: number
}

function cheaper (a: Cost, b: Cost): boolean {
  if (a.hops !== b.hops) {
    return a.hops < b.hops
  }
  if (a.full !== b.full) {
    return a.full < b.full
  }
  if (a.rtt !== b.rtt) {
    return a.rtt < b.rtt
  }
  return a.queue < b.queue
}

/** The cheapest chain of spans covering decoder layers [0, numLayers); throws ERR_MESH_NO_ROUTE. */
export function planRoute<S extends PlannedSpan> (spans: S[], numLayers: number): S[] {
  const usable = spans
    .filter(s => Number.isSafeInteger(s.start) && Number.isSafeInteger(s.end) && s.start >= 0 && s.end > s.start && s.end <= numLayers)
    .sort((a, b) => a.start - b.start || a.end - b.end || (a.peerId.toString() < b.peerId.toString() ? -1 : 1))
  const best: Array<{ cost: Cost, via?: S, from: number } | undefined> = new Array(numLayers + 1)
  best[0] = { cost: { hops: 0, rtt: 0, queue: 0, full: 0 }, from: -1 }
  for (let p = 0; p < numLayers; p++) {
    const here = best[p]
    if (here == null) {
      continue
    }
    for (const s of usable) {
      if (s.start !== p) {
        continue
      }
      const cost: Cost = {
        hops: here.cost.hops + 1,
        rtt: here.cost.rtt + (s.rttMs ?? UNKNOWN_RTT_MS),
        queue: here.cost.queue + s.queueLength,
        full: here.cost.full + (s.freeSessions > 0 ? 0 : 1)
      }
      const known = best[s.end]
      if (known == null || cheaper(cost, known.cost)) {
        best[s.end] = { cost, via: s, from: p }
      }
    }
  }
  if (best[numLayers] == null) {
    const covered = new Set<number>()
    for (const s of usable) {
      for (let l = s.start; l < s.end; l++) {
        covered.add(l)
      }
    }
    const missing = Array.from({ length: numLayers }, (_, l) => l).filter(l => !covered.has(l))
    throw new MeshError(MeshErrorCode.NoRoute, missing.length > 0
      ? `no live span holds layer${missing.length > 1 ? 's' : ''} ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''} of the ${numLayers}`
      : `the ${usable.length} live spans hold every layer but no chain of them meets end to end over [0, ${numLayers})`)
  }
  const route: S[] = []
  for (let p = numLayers; p > 0;) {
    const step = best[p] as { via: S, from: number }
    route.unshift(step.via)
    p = step.from
  }
  return route
}

/** A deterministic small number from a peer id (tie breaks). */
function peerRank (peerId: string): number {
  return createHash('sha256').update(peerId).digest().readUInt32BE(0)
}

/** The span `--layers auto` serves (see the file comment); `spans` are the other peers' live spans. */
export function chooseAutoSpan (spans: PlannedSpan[], numLayers: number, nodes: number, self: string): { start: number, end: number } {
  if (!Number.isSafeInteger(numLayers) || numLayers < 1) {
    throw new MeshError(MeshErrorCode.BadSpan, `a model needs at least one layer, got ${numLayers}`)
  }
  const n = Math.min(numLayers, Math.max(1, Math.floor(nodes)))
  const size = Math.ceil(numLayers / n)
  const holders = new Array<number>(numLayers).fill(0)
  for (const s of spans) {
    if (s.peerId.toString() === self) {
      continue
    }
    for (let l = Math.max(0, s.start); l < Math.min(numLayers, s.end); l++) {
      holders[l]++
    }
  }
  const windows: Array<{ start: number, end: number, least: number, total: number }> = []
  for (let start = 0; start < numLayers; start += size) {
    const end = Math.min(numLayers, start + size)
    const held = holders.slice(start, end)
    windows.push({ start, end, least: Math.min(...held), total: held.reduce((a, b) => a + b, 0) })
  }
  const least = Math.min(...windows.map(w => w.least))
  const atLeast = windows.filter(w => w.least === least)
  const total = Math.min(...atLeast.map(w => w.total))
  const ties = atLeast.filter(w => w.total === total)
  const pick = ties[peerRank(self) % ties.length]
  return { start: pick.start, end: pick.end }
}

/** Parses "START-END" (0-based, END exclusive); throws ERR_MESH_BAD_SPAN when it does not fit `numLayers`. */
export function parseSpan (text: string, numLayers: number): { start: number, end: number } {
  const m = /^(\d+)-(\d+)$/.exec(text)
  const start = m == null ? NaN : Number(m[1])
  const end = m == null ? NaN : Number(m[2])
  if (!(start < end) || end > numLayers) {
    throw new MeshError(MeshErrorCode.BadSpan, `--layers ${text} does not fit a model of ${numLayers} layers (give START-END with 0 <= START < END <= ${numLayers})`)
  }
  return { start, end }
}
