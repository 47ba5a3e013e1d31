/**
 * decideReplan (src/mesh/span-replan.ts): the periodic re-plan of a
 * `--layers auto` node over swarm views. 4 layers of 100 bytes; every node
 * holds 2 layers at most (memory 200). Speeds come from the announced span
 * throughputs (tokens/s x 1000 through the whole span).
 */
import { expect } from 'aegir/chai'
import { decideReplan } from '../../src/mesh/span-replan.ts'
import { swarmView } from '../../src/mesh/swarm-plan.ts'
import type { SwarmSpan } from '../../src/mesh/swarm-plan.ts'

const LAYER_BYTES = [100, 100, 100, 100]
const MEMORY = 200

function span (peer: string, start: number, end: number, throughputMilli = 0): SwarmSpan {
  return { peerId: peer, start, end, throughputMilli }
}

function decide (self: string, spans: SwarmSpan[], options: { minGain?: number, replicas?: number } = {}): ReturnType<typeof decideReplan> {
  return decideReplan({ layerBytes: LAYER_BYTES, spans, self, memoryBytes: MEMORY }, options)
}

describe('mesh: periodic re-plan decision (decideReplan)', () => {
  it('moves exactly one of two holders of [2, 4) into the hole [0, 2) a departed node left; the other stays', () => {
    // b held [0, 2) and is gone: c and d both hold [2, 4)
    const spans = [span('c', 2, 4, 1000), span('d', 2, 4, 1000)]
    const c = decide('c', spans)
    const d = decide('d', spans)
    const movers = [c, d].filter(x => x.moved)
    expect(movers).to.have.lengthOf(1)
    const [mover] = movers
    expect(mover).to.deep.include({ moved: true, from: { start: 2, end: 4 }, to: { start: 0, end: 2 }, reason: 'coverage', gain: null })
    const stayer = mover === c ? d : c
    expect(stayer).to.deep.include({ moved: false, from: { start: 2, end: 4 }, reason: 'other-node' })
    // ties go to the first in peer-id order, whatever the input order
    expect(decide('c', [...spans].reverse()).moved).to.equal(c.moved)
  })

  it('does not move when the whole swarm is covered and the bottleneck gain is below minGain', () => {
    // layers 0-1: x 1.1 + z 1.0 tokens/s; layers 2-3: y 1.0. z moving to [2, 4) raises the bottleneck 1.0 -> 1.1 (+10%)
    const spans = [span('x', 0, 2, 1100), span('y', 2, 4, 1000), span('z', 0, 2, 1000)]
    const held = decide('z', spans)
    expect(held).to.deep.include({ moved: false, from: { start: 0, end: 2 }, reason: 'no-gain', gain: 0 })
    // with a 5% gate the same move passes, and the gain is reported
    const moved = decide('z', spans, { minGain: 0.05 })
    expect(moved).to.deep.include({ moved: true, from: { start: 0, end: 2 }, reason: 'throughput' })
    expect(moved.to?.start).to.be.at.least(2)
    expect(moved.gain).to.be.closeTo(0.1, 1e-9)
    // past the default 15% gate: x passes 1.3 on layers 0-1, z 0.5 there; z on [2, 4) lifts layers 2-3 from 1.0 to 1.5 (bottleneck 1.0 -> 1.3)
    const clear = decide('z', [span('x', 0, 2, 1300), span('y', 2, 4, 1000), span('z', 0, 2, 500)])
    expect(clear).to.deep.include({ moved: true, reason: 'throughput' })
    expect(clear.gain).to.be.closeTo(0.3, 1e-9)
  })

  it('reads memory and movability from the records: a fixed node is never the one to move', () => {
    // c (fixed, announces movable: false) would be the first in peer-id order to fill the hole; d moves instead
    const spans = [{ ...span('c', 2, 4, 1000), movable: false }, { ...span('d', 2, 4, 1000), movable: true }]
    expect(decide('d', spans)).to.deep.include({ moved: true, to: { start: 0, end: 2 }, reason: 'coverage' })
    expect(decide('d', spans.map(s => ({ ...s, movable: true })))).to.deep.include({ moved: false, reason: 'other-node' })
    // the view: a peer's announced memory is used, an unannounced one gets this node's (estimated), fixed nodes are pinned
    const view = swarmView({ layerBytes: LAYER_BYTES, self: 'd', memoryBytes: MEMORY, spans: [...spans, { ...span('g', 0, 1), memoryBytes: 400 }] })
    expect(view.nodes.map(n => [n.id, n.memoryBytes, n.memoryEstimated, n.pinned === true])).to.deep.equal([
      ['c', 200, true, true],
      ['d', 200, false, false],
      ['g', 400, false, false]
    ])
  })

  it('never moves the last holder of a layer, however much the bottleneck would gain', () => {
    // x is slow on [0, 2): layers 0-1 are the bottleneck, but y is the only holder of [2, 4)
    const spans = [span('x', 0, 2, 100), span('y', 2, 4, 10_000)]
    expect(decide('y', spans)).to.deep.include({ moved: false, reason: 'no-gain' })
    expect(decide('x', spans)).to.deep.include({ moved: false, reason: 'no-gain' })
    // with a second holder of [2, 4), one of them may go and help [0, 2)
    const helped = decide('w', [...spans, span('w', 2, 4, 10_000)])
    const other = decide('y', [...spans, span('w', 2, 4, 10_000)])
    expect([helped.moved, other.moved].filter(Boolean)).to.have.lengthOf(1)
    const mover = helped.moved ? helped : other
    expect(mover.to).to.deep.equal({ start: 0, end: 2 })
  })

  it('over random swarm views, a node that moves never leaves a layer it held without a holder', () => {
    let seed = 7
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    let moves = 0
    for (let round = 0; round < 300; round++) {
      const spans: SwarmSpan[] = []
      const count = 2 + rand(4)
      for (let i = 0; i < count; i++) {
        const start = rand(4)
        const end = Math.min(4, start + 1 + rand(2))
        spans.push(span(`n${i}`, start, end, 100 + rand(3000)))
      }
      for (const s of spans) {
        const d = decide(s.peerId.toString(), spans)
        if (!d.moved || d.to == null) {
          continue
        }
        moves++
        for (let l = s.start; l < s.end; l++) {
          if (l < d.to.start || l >= d.to.end) {
            expect(spans.some(o => o !== s && o.start <= l && l < o.end), `layer ${l} keeps a holder in round ${round}`).to.equal(true)
          }
        }
      }
    }
    expect(moves).to.be.above(0)
  })

  it('does nothing while its own span is not among the live spans', () => {
    expect(decide('c', [span('d', 2, 4)])).to.deep.equal({ moved: false, gain: 0, reason: 'not-announced' })
  })
})
