import { expect } from 'aegir/chai'
import { Prng } from '../../src/model/prng.ts'
import { evaluatePlan, LayerModel, planPartition, PlannerErrorCode, rebalance, speedFromSpanThroughput } from '../../src/pipeline/planner/index.ts'
import { exhaustiveBest, LAYER_BYTES, randInt, randomNodes } from './planner-helpers.ts'
import type { ModelShape, Plan, PlannerNode, SpanAssignment } from '../../src/pipeline/planner/index.ts'

/** Every span is inside the model and fits its node's memory; metrics match a fresh evaluation. */
function checkPlan (model: ModelShape, nodes: PlannerNode[], plan: Plan, replicas: number): void {
  const lm = new LayerModel(model)
  const byId = new Map(nodes.map(n => [n.id, n]))
  for (const s of plan.spans) {
    expect(lm.isSpan(s)).to.equal(true)
    expect(lm.memoryOf(s.start, s.end)).to.be.at.most((byId.get(s.id) as PlannerNode).memoryBytes)
  }
  expect(new Set(plan.spans.map(s => s.id)).size).to.equal(plan.spans.length)
  expect(evaluatePlan(model, nodes, plan.spans, { replicas })).to.deep.equal(plan.metrics)
}

function totalSlots (model: ModelShape, nodes: PlannerNode[]): { slots: number, largest: number } {
  const lm = new LayerModel(model)
  const caps = nodes.map(n => lm.maxSlots(n.memoryBytes))
  return { slots: caps.reduce((a, b) => a + b, 0), largest: Math.max(...caps) }
}

describe('pipeline/planner', () => {
  it('matches an exhaustive search on small swarms: coverage exactly, bottleneck within 10%', () => {
    const rng = new Prng(20240601)
    let worst = Infinity
    for (let c = 0; c < 90; c++) {
      const layers = c < 75 ? randInt(rng, 6, 8) : 6
      const n = c < 75 ? randInt(rng, 3, 4) : 5
      const replicas = randInt(rng, 1, 3)
      // a third of the cases have heavier first / last layers and uneven compute
      const model: ModelShape = c % 3 !== 2
        ? { layers, memoryBytes: LAYER_BYTES }
        : {
            layers,
            memoryBytes: Array.from({ length: layers }, (_, l) => l === 0 || l === layers - 1 ? 2 * LAYER_BYTES : LAYER_BYTES),
            compute: Array.from({ length: layers }, () => randInt(rng, 1, 3))
          }
      const nodes = randomNodes(rng, n, 1, n === 5 ? 4 : Math.min(layers, 6))
      const plan = planPartition(model, nodes, { replicas })
      checkPlan(model, nodes, plan, replicas)
      const best = exhaustiveBest(model, nodes, replicas)
      const m = plan.metrics
      expect(Math.min(m.minHolders, replicas), `case ${c}: min holders`).to.equal(best.minCov)
      expect(m.coveredSlots, `case ${c}: covered slots`).to.equal(best.sumCov)
      expect(m.replicasMet).to.equal(best.minCov === replicas)
      if (best.bottleneck > 0) {
        const ratio = m.bottleneck / best.bottleneck
        expect(ratio, `case ${c}: bottleneck ${m.bottleneck} vs best ${best.bottleneck}`).to.be.at.least(0.9)
        worst = Math.min(worst, ratio)
      } else {
        expect(m.bottleneck).to.equal(0)
      }
      expect(best.bottleneck).to.be.at.most(m.throughputBound * (1 + 1e-9))
    }
    expect(worst).to.be.at.most(1 + 1e-9)
  })

  for (const [n, layers, replicas] of [[10, 36, 1], [40, 36, 2], [200, 36, 3], [1000, 36, 2], [1000, 64, 3]]) {
    it(`covers every layer ${replicas}x where memory allows: ${n} nodes, ${layers} layers`, () => {
      const rng = new Prng(n * 31 + layers)
      const model = { layers, memoryBytes: LAYER_BYTES }
      const nodes = randomNodes(rng, n, 2, 36)
      const plan = planPartition(model, nodes, { replicas })
      checkPlan(model, nodes, plan, replicas)
      const { slots, largest } = totalSlots(model, nodes)
      // laying the nodes end to end R times reaches R-fold coverage with this much room
      if (slots >= replicas * (layers + largest - 1)) {
        expect(plan.metrics.replicasMet).to.equal(true)
        expect(plan.metrics.minHolders).to.be.at.least(replicas)
      }
      expect(plan.metrics.uncoveredLayers).to.deep.equal([])
      expect(plan.idle).to.deep.equal([])
      if (n >= 200) {
        // large swarms have the freedom to balance: near the sum-of-speeds bound
        expect(plan.metrics.bottleneck).to.be.at.least(0.9 * plan.metrics.throughputBound)
      }
    })
  }

  it('says so when memory cannot hold the replicas, and still covers what it can', () => {
    const rng = new Prng(99)
    for (let c = 0; c < 3; c++) {
      const layers = 24
      const nodes = randomNodes(rng, 10, 2, 8)
      const model = { layers, memoryBytes: LAYER_BYTES }
      const { slots } = totalSlots(model, nodes)
      const replicas = Math.floor(slots / layers) + 1
      const plan = planPartition(model, nodes, { replicas })
      checkPlan(model, nodes, plan, replicas)
      expect(plan.metrics.replicasMet).to.equal(false)
      expect(plan.metrics.replicasBound).to.be.below(replicas)
      expect(plan.metrics.shortLayers.length).to.be.above(0)
      expect(plan.metrics.shortLayers).to.deep.equal(plan.metrics.holders.flatMap((h, l) => h < replicas ? [l] : []))
      if (slots >= layers) {
        expect(plan.metrics.minHolders).to.be.at.least(1)
      }
    }
  })

  it('leaves idle a node whose memory holds no layer and reports the uncovered layers', () => {
    const model = { layers: 4, memoryBytes: LAYER_BYTES }
    const nodes = [{ id: 'big', memoryBytes: 2 * LAYER_BYTES, speed: 10 }, { id: 'tiny', memoryBytes: LAYER_BYTES - 1, speed: 100 }]
    const plan = planPartition(model, nodes, { replicas: 1 })
    expect(plan.idle).to.deep.equal(['tiny'])
    expect(plan.spans).to.have.length(1)
    expect(plan.metrics.uncoveredLayers).to.have.length(2)
    expect(plan.metrics.bottleneck).to.equal(0)
    expect(plan.metrics.replicasMet).to.equal(false)
  })

  it('is deterministic', () => {
    const nodes = randomNodes(new Prng(5), 30, 2, 20)
    const model = { layers: 24, memoryBytes: LAYER_BYTES }
    expect(planPartition(model, nodes, { replicas: 2 })).to.deep.equal(planPartition(model, nodes, { replicas: 2 }))
  })

  it('rejects bad input with a code', () => {
    const model = { layers: 4, memoryBytes: LAYER_BYTES }
    const node = { id: 'a', memoryBytes: 4000, speed: 1 }
    const bad: Array<() => unknown> = [
      () => planPartition({ layers: 0, memoryBytes: 1 }, [node]),
      () => planPartition({ layers: 2, memoryBytes: [1] }, [node]),
      () => planPartition({ layers: 2, memoryBytes: 1, compute: [1, 0] }, [node]),
      () => planPartition(model, [node, node]),
      () => planPartition(model, [{ ...node, memoryBytes: -1 }]),
      () => planPartition(model, [{ ...node, speed: NaN }]),
      () => planPartition(model, [node], { replicas: 0 }),
      () => evaluatePlan(model, [node], [{ id: 'a', start: 0, end: 5 }]),
      () => evaluatePlan(model, [{ ...node, memoryBytes: 1000 }], [{ id: 'a', start: 0, end: 2 }]),
      () => evaluatePlan(model, [node], [{ id: 'b', start: 0, end: 2 }]),
      () => rebalance(model, [], [node], { minGain: -1 }),
      () => speedFromSpanThroughput(model, { start: 3, end: 3 }, 1)
    ]
    for (const fn of bad) {
      expect(fn).to.throw().with.property('code', PlannerErrorCode.INVALID_ARGUMENT)
    }
  })

  it('converts an announced span throughput to a node speed', () => {
    const model = { layers: 4, memoryBytes: 1, compute: [1, 2, 3, 4] }
    expect(speedFromSpanThroughput(model, { start: 1, end: 3 }, 10)).to.equal(50)
  })
})

describe('pipeline/planner rebalance', () => {
  const model = { layers: 2, memoryBytes: LAYER_BYTES }
  // layer 0: 50 + 5 + 5 = 60 tokens/s, layer 1: 50; moving b or c to layer 1 gives 55 / 55 (+10%)
  const nodes = [
    { id: 'a', memoryBytes: 2 * LAYER_BYTES, speed: 100 },
    { id: 'b', memoryBytes: LAYER_BYTES, speed: 5 },
    { id: 'c', memoryBytes: LAYER_BYTES, speed: 5 }
  ]
  const current = [{ id: 'a', start: 0, end: 2 }, { id: 'b', start: 0, end: 1 }, { id: 'c', start: 0, end: 1 }]

  it('moves a node only when the bottleneck gains more than minGain', () => {
    const stay = rebalance(model, current, nodes)
    expect(stay.moves).to.deep.equal([])
    expect(stay.after.bottleneck).to.equal(50)
    const go = rebalance(model, current, nodes, { minGain: 0.05 })
    expect(go.moves).to.have.length(1)
    expect(go.moves[0]).to.include({ reason: 'balance' })
    expect(go.moves[0].to).to.deep.equal({ start: 1, end: 2 })
    expect(go.after.bottleneck).to.equal(55)
    expect(go.before.bottleneck).to.equal(50)
  })

  it('never proposes a balance move of a pinned node (a fixed span); another node moves instead', () => {
    const go = rebalance(model, current, nodes, { minGain: 0.05 })
    const mover = go.moves[0].id
    const pinned = nodes.map(n => n.id === mover ? { ...n, pinned: true } : n)
    const other = rebalance(model, current, pinned, { minGain: 0.05 })
    expect(other.moves).to.have.length(1)
    expect(other.moves[0].id).to.not.equal(mover)
    expect(other.moves[0].to).to.deep.equal({ start: 1, end: 2 })
    // nothing movable left: no move
    const none = rebalance(model, current, nodes.map(n => ({ ...n, pinned: true })), { minGain: 0.05 })
    expect(none.moves).to.deep.equal([])
  })

  it('places joins, drops departures and fills the hole a departure leaves', () => {
    const m = { layers: 6, memoryBytes: LAYER_BYTES }
    const live = [
      { id: 'x', memoryBytes: 3 * LAYER_BYTES, speed: 30 },
      { id: 'new', memoryBytes: 3 * LAYER_BYTES, speed: 30 }
    ]
    const r = rebalance(m, [{ id: 'x', start: 0, end: 3 }, { id: 'gone', start: 3, end: 6 }], live)
    expect(r.moves).to.deep.include({ id: 'gone', from: { start: 3, end: 6 }, reason: 'leave' })
    expect(r.moves).to.deep.include({ id: 'new', to: { start: 3, end: 6 }, reason: 'join' })
    expect(r.before.uncoveredLayers).to.deep.equal([3, 4, 5])
    expect(r.after.uncoveredLayers).to.deep.equal([])
  })

  it('re-places a node whose span no longer fits its memory', () => {
    const m = { layers: 4, memoryBytes: LAYER_BYTES }
    const r = rebalance(m, [{ id: 'x', start: 0, end: 4 }], [{ id: 'x', memoryBytes: 2 * LAYER_BYTES, speed: 1 }])
    expect(r.moves).to.have.length(1)
    expect(r.moves[0]).to.include({ id: 'x', reason: 'refit' })
    expect(r.spans).to.deep.equal([{ id: 'x', start: 0, end: 2 }])
  })

  it('keeps replicas and never removes a last holder through joins and departures', () => {
    const rng = new Prng(4242)
    const layers = 36
    const m = { layers, memoryBytes: LAYER_BYTES }
    let nodes = randomNodes(rng, 60, 2, 36, 'g0-')
    let spans: SpanAssignment[] = planPartition(m, nodes, { replicas: 2 }).spans
    let balanceMoves = 0
    for (let step = 1; step <= 25; step++) {
      const leaving = new Set<string>()
      for (let k = randInt(rng, 0, 4); k > 0; k--) {
        leaving.add(nodes[randInt(rng, 0, nodes.length - 1)].id)
      }
      nodes = [...nodes.filter(n => !leaving.has(n.id)), ...randomNodes(rng, randInt(rng, 0, 4), 2, 36, `g${step}-`)]
      const r = rebalance(m, spans, nodes, { replicas: 2, maxMoves: 3, minGain: 0.02 })
      // every layer held after the departures is still held after the moves
      for (let l = 0; l < layers; l++) {
        if (r.before.holders[l] > 0) {
          expect(r.after.holders[l], `step ${step} layer ${l}`).to.be.at.least(1)
        }
      }
      expect(r.after.minHolders).to.be.at.least(Math.min(r.before.minHolders, 2))
      expect(r.after.coveredSlots).to.be.at.least(r.before.coveredSlots)
      for (const move of r.moves.filter(mv => mv.reason === 'balance')) {
        balanceMoves++
        expect(move.from).to.not.equal(undefined)
      }
      expect(evaluatePlan(m, nodes, r.spans, { replicas: 2 })).to.deep.equal(r.after)
      expect(r.spans.map(s => s.id).sort()).to.deep.equal(nodes.map(n => n.id).sort())
      const { slots, largest } = totalSlots(m, nodes)
      if (slots >= 2 * (layers + largest - 1) && r.before.minHolders >= 1) {
        expect(r.after.replicasMet, `step ${step}`).to.equal(true)
      }
      spans = r.spans
    }
    expect(balanceMoves).to.be.above(0)
  })
})
