import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { MeshErrorCode } from '../../src/mesh/errors.ts'
import { spansOfVersion } from '../../src/mesh/mesh-generate.ts'
import { measuredLayerMs, planReplacement, routeSpans } from '../../src/mesh/mesh-route.ts'
import { PayloadPolicy } from '../../src/mesh/payload-policy.ts'
import { parseSpan } from '../../src/mesh/span-spec.ts'
import { chooseAutoSpan, planSwarm, swarmView } from '../../src/mesh/swarm-plan.ts'
import { evaluatePlan } from '../../src/pipeline/planner/index.ts'
import type { FieldValue, StoredBlock } from '../../src/chain/types.ts'
import type { SwarmViewInit } from '../../src/mesh/swarm-plan.ts'

interface TestSpan {
  peerId: string
  start: number
  end: number
  rttMs?: number
  queueLength: number
  freeSessions: number
  throughputMilli: number
}

/** A span with 1 ms RTT and 10 tok/s through it (unless told otherwise). */
function span (peerId: string, start: number, end: number, extra: Partial<TestSpan> = {}): TestSpan {
  return { peerId, start, end, rttMs: 1, queueLength: 0, freeSessions: 4, throughputMilli: 10_000, ...extra }
}

function hops (route: TestSpan[]): string[] {
  return route.map(s => `${s.peerId}:${s.start}-${s.end}`)
}

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err: any) {
    return err.code
  }
  return undefined
}

describe('mesh: routing through findRoute (RTT + compute + queue wait)', () => {
  it('chains spans whose layers meet; on equal cost the fewest hops win, whatever the input order', () => {
    // a + b: 2 x (1 ms RTT + 100 ms compute); e: 2 ms RTT + 200 ms compute: equal cost, fewer hops
    const spans = [span('a', 0, 2), span('b', 2, 4), span('e', 0, 4, { throughputMilli: 5000, rttMs: 2 })]
    expect(hops(routeSpans(spans, 4))).to.deep.equal(['e:0-4'])
    // the same answer whatever order the spans come in
    const tie = [span('a', 0, 2), span('b', 2, 4), span('c', 0, 1, { throughputMilli: 20_000 }), span('d', 1, 4, { throughputMilli: 20_000 / 3 * 2 })]
    expect(hops(routeSpans(tie.slice().reverse(), 4))).to.deep.equal(hops(routeSpans(tie, 4)))
  })

  it('weighs compute: a slow single span loses to two fast hops, and a fast one wins over them', () => {
    const two = [span('a', 0, 2, { throughputMilli: 100_000 }), span('b', 2, 4, { throughputMilli: 100_000 })]
    // one hop at 1 tok/s = 1000 ms; two hops at 100 tok/s = 2 x (1 ms RTT + 10 ms)
    expect(hops(routeSpans([...two, span('slow', 0, 4, { throughputMilli: 1000 })], 4))).to.deep.equal(['a:0-2', 'b:2-4'])
    expect(hops(routeSpans([...two, span('fast', 0, 4, { throughputMilli: 1_000_000 })], 4))).to.deep.equal(['fast:0-4'])
  })

  it('a span with no throughput measured yet counts the mean measured per-layer time', () => {
    const measured = [span('a', 0, 2, { throughputMilli: 1_000_000 }), span('b', 2, 4, { throughputMilli: 1_000_000 })]
    const fresh = span('fresh', 0, 4, { throughputMilli: 0 })
    // a and b: 0.5 ms per layer; fresh counts the same, so one hop (one RTT) beats two
    expect(measuredLayerMs(measured)).to.equal(0.5)
    expect(hops(routeSpans([...measured, fresh], 4))).to.deep.equal(['fresh:0-4'])
    // a fresh span among slow ones is not preferred for being new: it counts their mean
    const slow = [span('a', 0, 2, { throughputMilli: 1000, rttMs: 0 }), span('b', 2, 4, { throughputMilli: 1000, rttMs: 0 })]
    expect(hops(routeSpans([...slow, span('fresh', 0, 4, { throughputMilli: 0, rttMs: 5 })], 4))).to.deep.equal(['a:0-2', 'b:2-4'])
    // nothing measured: the route finder's default (50 ms per layer)
    expect(measuredLayerMs([fresh])).to.equal(undefined)
  })

  it('weighs RTT, queue wait and full stages; an unknown RTT counts 1 s', () => {
    const near = [span('far', 0, 4, { rttMs: 300 }), span('near', 0, 4, { rttMs: 5 })]
    expect(hops(routeSpans(near, 4))).to.deep.equal(['near:0-4'])
    // 3 queued requests at 100 ms a step = +300 ms: the 200 ms peer is cheaper
    const queued = [span('busy', 0, 4, { queueLength: 3, rttMs: 1 }), span('idle', 0, 4, { rttMs: 200 })]
    expect(hops(routeSpans(queued, 4))).to.deep.equal(['idle:0-4'])
    const full = [span('a', 0, 4, { freeSessions: 0, rttMs: 0 }), span('b', 0, 4, { rttMs: 100 })]
    expect(hops(routeSpans(full, 4))).to.deep.equal(['b:0-4'])
    const unknown = [span('a', 0, 4, { rttMs: undefined }), span('b', 0, 4, { rttMs: 200 })]
    expect(hops(routeSpans(unknown, 4))).to.deep.equal(['b:0-4'])
  })

  it('uses part of a span when that is the only way, paying compute for the layers used', () => {
    // a [0, 3) and b [2, 4) overlap: no chain of whole spans meets end to end (this used to be
    // ERR_MESH_NO_ROUTE). a's 3 layers + b's last (33 + 50 ms per layer) beat a's 2 + b's 2
    const route = routeSpans([span('a', 0, 3), span('b', 2, 4)], 4)
    expect(hops(route)).to.deep.equal(['a:0-3', 'b:3-4'])
    // a hop is a copy of its span with the layers it runs; the span itself is untouched
    expect(route[1]).to.include({ peerId: 'b', throughputMilli: 10_000, start: 3, end: 4 })
    // a fast span is entered past its start: [0, 1) from the only holder of layer 0, then the fast one
    const fast = [span('slow', 0, 4, { throughputMilli: 100 }), span('fast', 1, 4, { throughputMilli: 1_000_000 })]
    expect(hops(routeSpans(fast, 4))).to.deep.equal(['slow:0-1', 'fast:1-4'])
    // and left before its end when the rest is cheaper elsewhere
    const leave = [span('x', 0, 4, { throughputMilli: 100 }), span('y', 0, 3, { throughputMilli: 1_000_000 })]
    expect(hops(routeSpans(leave, 4))).to.deep.equal(['y:0-3', 'x:3-4'])
  })

  it('says which layers nobody holds (ERR_MESH_NO_ROUTE)', () => {
    expect(codeOf(() => routeSpans([span('a', 0, 2)], 4))).to.equal(MeshErrorCode.NO_ROUTE)
    expect(() => routeSpans([span('a', 0, 2)], 4)).to.throw(/no live span holds layers 2, 3 of the 4/)
    expect(codeOf(() => routeSpans([], 4))).to.equal(MeshErrorCode.NO_ROUTE)
    // spans past the model's end are ignored
    expect(codeOf(() => routeSpans([span('a', 0, 5)], 4))).to.equal(MeshErrorCode.NO_ROUTE)
  })

  it('failover: replaces exactly the lost range with unbanned spans or the lost layers of larger spans, cheapest first', () => {
    // ms per layer at 10 tok/s: c, d 100; e 50; f 33; g 25; h (14 tok/s over 2 layers) 36
    const spans = [span('a', 0, 2), span('b', 2, 4), span('c', 2, 3), span('d', 3, 4), span('e', 2, 4, { rttMs: 50 }), span('f', 1, 4), span('g', 2, 6), span('h', 2, 4, { throughputMilli: 14_000 })]
    const lost = { start: 2, end: 4 }
    // b is lost and banned: layers 2, 3 of g (2 x 25 ms) are cheapest. Stages serve a sub-range of
    // their span now, so spans reaching outside [2, 4) are used for the lost layers only (they
    // were never used while stages served whole spans only)
    expect(hops(planReplacement(spans, lost, new Set(['b'])))).to.deep.equal(['g:2-4'])
    // a part of a span is priced per layer of its whole span: f's 2 of 3 layers (67 ms) beat h (71 ms)
    expect(hops(planReplacement(spans, lost, new Set(['b', 'g'])))).to.deep.equal(['f:2-4'])
    expect(planReplacement(spans, lost, new Set(['b', 'g']))[0]).to.include({ peerId: 'f', start: 2, end: 4, throughputMilli: 10_000 })
    // e (50 ms RTT + 100 ms compute) beats c + d (2 x (1 ms RTT + 100 ms compute))
    expect(hops(planReplacement(spans, lost, new Set(['b', 'f', 'g', 'h'])))).to.deep.equal(['e:2-4'])
    expect(hops(planReplacement(spans, lost, new Set(['b', 'e', 'f', 'g', 'h'])))).to.deep.equal(['c:2-3', 'd:3-4'])
    expect(() => planReplacement(spans, lost, new Set(['b', 'e', 'f', 'g', 'h', 'd']))).to.throw(/no live span holds layer 3 of \[2, 4\) \(6 banned peers left out\)/)
      .with.property('code', MeshErrorCode.NO_ROUTE)
    // a lost [0, 2) taken over by a live holder of [0, 3), for layers 0 and 1 only
    expect(hops(planReplacement([span('p', 0, 2), span('q', 0, 3), span('r', 2, 4)], { start: 0, end: 2 }, new Set(['p'])))).to.deep.equal(['q:0-2'])
  })
})

describe('mesh: --layers auto and blyd plan through the partition planner', () => {
  const base: SwarmViewInit = { layerBytes: [10, 10, 10, 10, 10, 10], spans: [], self: 'me', memoryBytes: 30 }

  it('versions: a generation routes, and fails over, only over the spans of its weights version', () => {
    const v0 = new Uint8Array(32).fill(1)
    const v1 = new Uint8Array(32).fill(2)
    const hex = (v: Uint8Array): string => Buffer.from(v).toString('hex')
    const spans = [
      { ...span('old-a', 0, 2), weightsVersion: v0 },
      { ...span('old-b', 2, 4), weightsVersion: v0 },
      // the cheapest whole span, but on the new version
      { ...span('new-whole', 0, 4, { throughputMilli: 100_000 }), weightsVersion: v1 },
      // a span that names no version is nobody's
      { ...span('unnamed', 2, 4), weightsVersion: new Uint8Array(0) }
    ]
    expect(hops(routeSpans(spans, 4))).to.deep.equal(['new-whole:0-4'])
    expect(hops(routeSpans(spansOfVersion(spans, hex(v0)), 4))).to.deep.equal(['old-a:0-2', 'old-b:2-4'])
    expect(hops(routeSpans(spansOfVersion(spans, hex(v1)), 4))).to.deep.equal(['new-whole:0-4'])
    // old-b lost: no other holder of v0 has [2, 4), whatever other versions hold
    expect(codeOf(() => planReplacement(spansOfVersion(spans, hex(v0)), { start: 2, end: 4 }, new Set(['old-b'])))).to.equal(MeshErrorCode.NO_ROUTE)
    expect(hops(planReplacement(spans, { start: 2, end: 4 }, new Set(['old-b'])))).to.not.include('old-b:2-4')
    // no pin: every span
    expect(spansOfVersion(spans, undefined)).to.have.length(4)
  })

  it('builds the swarm view: equal memory (at least the span held), speed from the announced throughput', () => {
    const view = swarmView({ ...base, spans: [span('x', 0, 4, { throughputMilli: 5000 }), span('y', 4, 6, { throughputMilli: 0 })] })
    expect(view.nodes.map(n => n.id)).to.deep.equal(['me', 'x', 'y'])
    // x holds 40 bytes > 30: its memory is at least that; 5 tok/s through 4 layers = speed 20
    expect(view.nodes.map(n => n.memoryBytes)).to.deep.equal([30, 40, 30])
    expect(view.nodes.map(n => n.speed)).to.deep.equal([20, 20, 20])
    expect(view.nodes.map(n => n.speedEstimated)).to.deep.equal([true, false, true])
    expect(view.current).to.deep.equal([{ id: 'x', start: 0, end: 4 }, { id: 'y', start: 4, end: 6 }])
  })

  it('joins an existing swarm where the layers are short, without moving anyone else', () => {
    // x holds [0, 2): this node (3 layers of memory) covers the next layers
    expect(chooseAutoSpan({ ...base, spans: [span('x', 0, 2)] })).to.deep.equal({ start: 2, end: 5 })
    // x and y cover the model, y slowly: this node backs up the bottleneck
    const spans = [span('x', 0, 3, { throughputMilli: 30_000 }), span('y', 3, 6, { throughputMilli: 1000 })]
    const mine = chooseAutoSpan({ ...base, spans })
    expect(mine.start).to.be.at.least(3)
    const view = swarmView({ ...base, spans })
    const before = evaluatePlan(view.shape, view.nodes, view.current)
    const after = evaluatePlan(view.shape, view.nodes, [...view.current, { id: 'me', ...mine }])
    expect(after.bottleneck).to.be.above(before.bottleneck)
    // its own old span is not counted as someone else's
    expect(chooseAutoSpan({ ...base, spans: [span('x', 0, 2), span('me', 0, 2)] })).to.deep.equal({ start: 2, end: 5 })
  })

  it('peers starting together compute the same plan and take different shares; replicas doubles coverage', () => {
    const peers = ['me', 'p', 'q']
    const picks = peers.map(self => chooseAutoSpan({ ...base, memoryBytes: 20, self, idlePeers: peers.filter(p => p !== self) }))
    const view = swarmView({ ...base, memoryBytes: 20, idlePeers: ['p', 'q'] })
    const metrics = evaluatePlan(view.shape, view.nodes, picks.map((s, i) => ({ id: peers[i], ...s })))
    expect(metrics.uncoveredLayers).to.deep.equal([])
    const six = ['a', 'b', 'c', 'd', 'e', 'f']
    const twice = six.map(self => chooseAutoSpan({ ...base, memoryBytes: 20, self, idlePeers: six.filter(p => p !== self) }, { replicas: 2 }))
    const view2 = swarmView({ ...base, self: 'a', memoryBytes: 20, idlePeers: six.slice(1) })
    expect(evaluatePlan(view2.shape, view2.nodes, twice.map((s, i) => ({ id: six[i], ...s })), { replicas: 2 }).minHolders).to.equal(2)
    // alone: the whole model when it fits
    expect(chooseAutoSpan({ ...base, memoryBytes: 1000 })).to.deep.equal({ start: 0, end: 6 })
  })

  it('refuses a memory that holds no layer, with a clear error', () => {
    expect(codeOf(() => chooseAutoSpan({ ...base, memoryBytes: 5 }))).to.equal(MeshErrorCode.BAD_SPAN)
    expect(() => chooseAutoSpan({ ...base, memoryBytes: 5 })).to.throw(/cannot hold one layer/)
    expect(codeOf(() => chooseAutoSpan({ ...base, memoryBytes: 0 }))).to.equal(MeshErrorCode.BAD_SPAN)
  })

  it('plan report: coverage, bottleneck, the moves rebalance proposes and a plan from scratch', () => {
    const report = planSwarm({ ...base, spans: [span('x', 0, 3, { throughputMilli: 30_000 }), span('y', 3, 6, { throughputMilli: 1000 })] })
    expect(report.coverage.map(c => c.holders)).to.deep.equal([['x'], ['x'], ['x'], ['y'], ['y'], ['y']])
    expect(report.coverage[0].tokensPerSecond).to.be.closeTo(30, 1e-9)
    expect(report.current.bottleneckLayer).to.equal(3)
    expect(report.current.bottleneckTokensPerSecond).to.be.closeTo(1, 1e-9)
    expect(report.moves.find(m => m.id === 'me')?.reason).to.equal('join')
    expect(report.afterMoves.bottleneckTokensPerSecond).to.be.above(1)
    expect(report.proposed.metrics.uncoveredLayers).to.deep.equal([])
    expect(report.proposed.spans.map(s => s.id).sort()).to.deep.equal(['me', 'x', 'y'])
  })

  it('parses START-END spans against the model', () => {
    expect(parseSpan('0-2', 4)).to.deep.equal({ start: 0, end: 2 })
    expect(parseSpan('2-4', 4)).to.deep.equal({ start: 2, end: 4 })
    for (const bad of ['0-5', '2-2', '3-1', 'x', '1-']) {
      expect(codeOf(() => parseSpan(bad, 4)), bad).to.equal(MeshErrorCode.BAD_SPAN)
    }
  })
})

describe('mesh: payload policy', () => {
  const model = new Uint8Array(32).fill(7)
  function layerBlock (kind: string, unit: number, of = model): StoredBlock {
    const fields = new Map<string, FieldValue>([
      ['model', { kind: 'bytes', value: of }],
      ['unit', { kind: 'uint', value: BigInt(unit) }],
      ['kind', { kind: 'string', value: kind }]
    ])
    return { id: new Uint8Array(32), header: { chain: ChainId.B, type: BlockType.Layer, fields } } as unknown as StoredBlock
  }
  const hex = Buffer.from(model).toString('hex')

  it('fetches manifests, notes, embeddings and heads always, decoder layers only when served', () => {
    const policy = new PayloadPolicy()
    const manifest = { header: { chain: ChainId.A, type: BlockType.ModelManifest, fields: new Map() } } as unknown as StoredBlock
    expect(policy.want(manifest)).to.equal(true)
    expect(policy.want(layerBlock('embedding', 0))).to.equal(true)
    expect(policy.want(layerBlock('head', 5))).to.equal(true)
    expect(policy.want(layerBlock('layer', 1))).to.equal(false)
    policy.serve(hex, 1, 3)
    expect([1, 2, 3, 4].map(u => policy.want(layerBlock('layer', u)))).to.deep.equal([true, true, false, false])
    expect(policy.want(layerBlock('layer', 1, new Uint8Array(32).fill(8)))).to.equal(false)
    expect(new PayloadPolicy({ full: true }).want(layerBlock('layer', 4))).to.equal(true)
  })
})
