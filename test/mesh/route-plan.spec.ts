import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { MeshErrorCode } from '../../src/mesh/errors.ts'
import { PayloadPolicy } from '../../src/mesh/payload-policy.ts'
import { chooseAutoSpan, parseSpan, planRoute } from '../../src/mesh/route-plan.ts'
import type { FieldValue, StoredBlock } from '../../src/chain/types.ts'
import type { PlannedSpan } from '../../src/mesh/route-plan.ts'

function span (peerId: string, start: number, end: number, extra: Partial<PlannedSpan> = {}): PlannedSpan {
  return { peerId, start, end, rttMs: 1, queueLength: 0, freeSessions: 4, ...extra }
}

function hops (route: PlannedSpan[]): string[] {
  return route.map(s => `${s.peerId.toString()}:${s.start}-${s.end}`)
}

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err: any) {
    return err.code
  }
  return undefined
}

describe('mesh: route planning', () => {
  it('chains spans whose boundaries meet, with the fewest hops', () => {
    const spans = [span('a', 0, 2), span('b', 2, 4), span('c', 0, 1, { rttMs: 2 }), span('d', 1, 4), span('e', 0, 4, { rttMs: 50 })]
    expect(hops(planRoute(spans, 4))).to.deep.equal(['e:0-4'])
    expect(hops(planRoute(spans.slice(0, 4), 4))).to.deep.equal(['a:0-2', 'b:2-4'])
    // equal cost: the same answer whatever order the spans come in
    const tie = [span('a', 0, 2), span('b', 2, 4), span('c', 0, 1), span('d', 1, 4)]
    expect(hops(planRoute(tie.slice().reverse(), 4))).to.deep.equal(hops(planRoute(tie, 4)))
  })

  it('prefers lower summed RTT among routes of equal length, and stages with room', () => {
    const spans = [span('a', 0, 2, { rttMs: 30 }), span('b', 2, 4, { rttMs: 30 }), span('c', 0, 3, { rttMs: 5 }), span('d', 3, 4, { rttMs: 5 })]
    expect(hops(planRoute(spans, 4))).to.deep.equal(['c:0-3', 'd:3-4'])
    const full = [span('a', 0, 4, { freeSessions: 0, rttMs: 0 }), span('b', 0, 4, { rttMs: 100 })]
    expect(hops(planRoute(full, 4))).to.deep.equal(['b:0-4'])
    const unknown = [span('a', 0, 4, { rttMs: undefined }), span('b', 0, 4, { rttMs: 200 })]
    expect(hops(planRoute(unknown, 4))).to.deep.equal(['b:0-4'])
  })

  it('says which layers nobody holds, or that the spans do not meet', () => {
    expect(codeOf(() => planRoute([span('a', 0, 2)], 4))).to.equal(MeshErrorCode.NoRoute)
    expect(() => planRoute([span('a', 0, 2)], 4)).to.throw(/layers 2, 3/)
    expect(() => planRoute([span('a', 0, 3), span('b', 2, 4)], 4)).to.throw(/no chain of them meets/)
    expect(codeOf(() => planRoute([], 4))).to.equal(MeshErrorCode.NoRoute)
    // spans past the model's end are ignored
    expect(codeOf(() => planRoute([span('a', 0, 5)], 4))).to.equal(MeshErrorCode.NoRoute)
  })

  it('auto span: the window with the fewest holders, ties spread by peer id', () => {
    // 3 nodes, 6 layers: windows [0,2) [2,4) [4,6); [0,2) and [4,6) are held
    const held = [span('x', 0, 2), span('y', 4, 6)]
    expect(chooseAutoSpan(held, 6, 3, 'me')).to.deep.equal({ start: 2, end: 4 })
    // its own old span does not count
    expect(chooseAutoSpan([...held, span('me', 2, 4)], 6, 3, 'me')).to.deep.equal({ start: 2, end: 4 })
    // no information: a deterministic window per peer id, and different peers land on different windows
    const picks = new Set(['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8'].map(p => chooseAutoSpan([], 6, 3, p).start))
    expect(picks.size).to.be.above(1)
    expect(chooseAutoSpan([], 6, 3, 'p1')).to.deep.equal(chooseAutoSpan([], 6, 3, 'p1'))
    // alone: the whole model; more nodes than layers: one layer each
    expect(chooseAutoSpan([], 4, 1, 'me')).to.deep.equal({ start: 0, end: 4 })
    expect(chooseAutoSpan([span('a', 0, 1), span('b', 1, 2), span('c', 3, 4)], 4, 9, 'me')).to.deep.equal({ start: 2, end: 3 })
    // the remainder goes to the last window
    expect(chooseAutoSpan([span('a', 0, 3)], 5, 2, 'me')).to.deep.equal({ start: 3, end: 5 })
  })

  it('parses START-END spans against the model', () => {
    expect(parseSpan('0-2', 4)).to.deep.equal({ start: 0, end: 2 })
    expect(parseSpan('2-4', 4)).to.deep.equal({ start: 2, end: 4 })
    for (const bad of ['0-5', '2-2', '3-1', 'x', '1-']) {
      expect(codeOf(() => parseSpan(bad, 4)), bad).to.equal(MeshErrorCode.BadSpan)
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
