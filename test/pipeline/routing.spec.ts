import { expect } from 'aegir/chai'
import { Prng } from '../../src/model/prng.ts'
import { findRoute, hopCost, RoutingErrorCode } from '../../src/pipeline/routing/index.ts'
import { randInt } from './planner-helpers.ts'
import type { RoutableSpan, RouteOptions } from '../../src/pipeline/routing/index.ts'

interface TestSpan extends RoutableSpan {
  peerId: string
}

/** The best (cost, hops) over every chain of hops from layer 0 to numLayers, by plain enumeration. */
function bruteForce (spans: TestSpan[], numLayers: number, options: RouteOptions): { cost: number, hops: number } | undefined {
  const banned = new Set([...(options.banned ?? [])].map(String))
  let best: { cost: number, hops: number } | undefined
  const walk = (at: number, cost: number, hops: number): void => {
    if (at === numLayers) {
      if (best == null || cost < best.cost || (cost === best.cost && hops < best.hops)) {
        best = { cost, hops }
      }
      return
    }
    for (const s of spans) {
      if (banned.has(s.peerId)) {
        continue
      }
      const enter = options.partial === true ? s.start <= at && at < s.end : s.start === at
      if (!enter) {
        continue
      }
      for (let to = options.partial === true ? at + 1 : s.end; to <= s.end; to++) {
        walk(to, cost + hopCost(s, at, to, options).totalMs, hops + 1)
      }
    }
  }
  walk(0, 0, 0)
  return best
}

function randomSpans (rng: Prng, numLayers: number, count: number): TestSpan[] {
  return Array.from({ length: count }, (_, i) => {
    const start = randInt(rng, 0, numLayers - 1)
    const end = randInt(rng, start + 1, Math.min(numLayers, start + 4))
    const span: TestSpan = { peerId: `p${i}`, start, end, queueLength: randInt(rng, 0, 2), freeSessions: randInt(rng, 0, 3) }
    // integer costs on half the spans make ties common
    if (rng.next() < 0.5) {
      span.rttMs = randInt(rng, 0, 3) * 10
    } else {
      span.rttMs = rng.next() < 0.2 ? undefined : rng.next() * 40
      span.throughputMilli = rng.next() < 0.2 ? 0 : randInt(rng, 1, 100) * 1000
    }
    return span
  })
}

describe('pipeline/routing', () => {
  it('equals a brute-force enumeration of all chains on random span sets', () => {
    const rng = new Prng(77)
    let routed = 0
    let failed = 0
    for (let c = 0; c < 400; c++) {
      const numLayers = randInt(rng, 3, 7)
      const spans = randomSpans(rng, numLayers, randInt(rng, 2, 9))
      const options: RouteOptions = {
        partial: c % 2 === 1,
        unknownLayerMs: 10,
        fullPenaltyMs: 100,
        banned: rng.next() < 0.3 ? [`p${randInt(rng, 0, spans.length - 1)}`] : []
      }
      const expected = bruteForce(spans, numLayers, options)
      if (expected == null) {
        expect(() => findRoute(spans, numLayers, options), `case ${c}`).to.throw().with.property('code', RoutingErrorCode.NO_ROUTE)
        failed++
        continue
      }
      const route = findRoute(spans, numLayers, options)
      routed++
      expect(route.costMs, `case ${c}`).to.equal(expected.cost)
      expect(route.hops.length, `case ${c}`).to.equal(expected.hops)
      // the hops chain over [0, numLayers) and use only what their spans hold
      let at = 0
      for (const hop of route.hops) {
        expect(hop.start).to.equal(at)
        expect(hop.start).to.be.at.least(hop.span.start)
        expect(hop.end).to.be.at.most(hop.span.end)
        if (options.partial !== true) {
          expect([hop.start, hop.end]).to.deep.equal([hop.span.start, hop.span.end])
        }
        expect([...(options.banned ?? [])].map(String)).to.not.include(hop.peerId)
        at = hop.end
      }
      expect(at).to.equal(numLayers)
      const b = route.breakdown
      expect(b.rttMs + b.computeMs + b.queueMs + b.busyMs).to.be.closeTo(route.costMs, 1e-9 * Math.max(1, route.costMs))
    }
    expect(routed).to.be.above(50)
    expect(failed).to.be.above(10)
  })

  it('prefers fewer hops on equal cost, whatever the input order', () => {
    const spans: TestSpan[] = [
      { peerId: 'b', start: 0, end: 2, rttMs: 5 },
      { peerId: 'c', start: 2, end: 4, rttMs: 5 },
      { peerId: 'a', start: 0, end: 4, rttMs: 10 }
    ]
    // every hop: rtt + 5 ms per layer; a: 10 + 20 = 30; b + c: 15 + 15 = 30
    for (const order of [spans, [...spans].reverse()]) {
      const route = findRoute(order, 4, { unknownLayerMs: 5 })
      expect(route.hops.map(h => h.peerId)).to.deep.equal(['a'])
      expect(route.costMs).to.equal(30)
    }
    const cheaper = findRoute([...spans.slice(0, 2), { ...spans[2], rttMs: 11 }], 4, { unknownLayerMs: 5 })
    expect(cheaper.hops.map(h => h.peerId)).to.deep.equal(['b', 'c'])
  })

  it('costs a hop as RTT + per-layer compute x layers + queue x step time + busy penalty', () => {
    const span = { peerId: 'x', start: 2, end: 6, rttMs: 3, throughputMilli: 50_000, queueLength: 2, freeSessions: 0 }
    // 50 tokens/s through 4 layers: 20 ms a step, 5 ms a layer
    expect(hopCost(span, 2, 6, { fullPenaltyMs: 7 })).to.deep.equal({ rttMs: 3, computeMs: 20, queueMs: 40, busyMs: 7, totalMs: 70 })
    expect(hopCost(span, 3, 5, { fullPenaltyMs: 7 }).computeMs).to.equal(10)
    expect(hopCost({ peerId: 'y', start: 0, end: 2 }, 0, 2, { unknownRttMs: 100, unknownLayerMs: 4 })).to.deep.equal({ rttMs: 100, computeMs: 8, queueMs: 0, busyMs: 0, totalMs: 108 })
  })

  it('routes around banned peers and says so when that leaves no route', () => {
    const spans: TestSpan[] = [
      { peerId: 'a', start: 0, end: 4, rttMs: 1 },
      { peerId: 'b', start: 0, end: 2, rttMs: 50 },
      { peerId: 'c', start: 2, end: 4, rttMs: 50 }
    ]
    expect(findRoute(spans, 4).hops.map(h => h.peerId)).to.deep.equal(['a'])
    expect(findRoute(spans, 4, { banned: ['a'] }).hops.map(h => h.peerId)).to.deep.equal(['b', 'c'])
    const err = (() => {
      try {
        findRoute(spans, 4, { banned: new Set(['a', 'c']) })
      } catch (e) {
        return e as Error & { code: string, missingLayers: number[] }
      }
      throw new Error('expected no route')
    })()
    expect(err.code).to.equal(RoutingErrorCode.NO_ROUTE)
    expect(err.missingLayers).to.deep.equal([2, 3])
    expect(err.message).to.include('layers 2, 3').and.include('2 spans of banned peers')
  })

  it('reports no route when a layer is uncovered, or when spans do not chain without partial use', () => {
    const gap: TestSpan[] = [{ peerId: 'a', start: 0, end: 2 }, { peerId: 'b', start: 3, end: 5 }]
    expect(() => findRoute(gap, 5)).to.throw(/no usable span holds layer 2 of the 5/).with.property('missingLayers').that.deep.equals([2])
    const overlap: TestSpan[] = [{ peerId: 'a', start: 0, end: 3 }, { peerId: 'b', start: 2, end: 5 }]
    expect(() => findRoute(overlap, 5)).to.throw(/hold every layer but no chain/).with.property('code', RoutingErrorCode.NO_ROUTE)
    const route = findRoute(overlap, 5, { partial: true })
    expect(route.hops.map(h => [h.peerId, h.start, h.end])).to.have.length(2)
    expect(route.hops[0].start).to.equal(0)
    expect(route.hops[1].end).to.equal(5)
  })

  it('avoids a full peer when another route exists', () => {
    const spans: TestSpan[] = [
      { peerId: 'full', start: 0, end: 2, rttMs: 1, freeSessions: 0 },
      { peerId: 'free', start: 0, end: 2, rttMs: 40, freeSessions: 1 }
    ]
    expect(findRoute(spans, 2).hops[0].peerId).to.equal('free')
    expect(findRoute(spans, 2, { fullPenaltyMs: 0 }).hops[0].peerId).to.equal('full')
  })

  it('skips malformed spans and rejects bad arguments with a code', () => {
    const spans = [{ peerId: 'a', start: 0, end: 9 }, { peerId: 'b', start: 1, end: 1 }, { peerId: 'c', start: 0, end: 2 }]
    expect(findRoute(spans, 2).hops.map(h => h.peerId)).to.deep.equal(['c'])
    for (const fn of [() => findRoute(spans, 0), () => findRoute(spans, 2, { unknownRttMs: -1 }), () => findRoute(undefined as unknown as TestSpan[], 2)]) {
      expect(fn).to.throw().with.property('code', RoutingErrorCode.INVALID_ARGUMENT)
    }
  })
})
