/**
 * Sessions over a sub-range of a shard's layers (Petals-style serving): a
 * session of layers [a, b) of a shard holding more runs only those layers,
 * caches only those, and gives what a shard holding exactly [a, b) gives;
 * on the calling thread and on worker threads.
 */
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { loadFixture, maxAbsDiff, sourceOf } from './fixtures.ts'
import type { Fixture } from './fixtures.ts'
import type { KvSession } from '../../src/model/qwen3/kv-cache.ts'

const TOL = 1e-4

for (const workers of [0, 2]) {
  describe(`model/qwen3 sessions over a sub-range of the held layers (${workers === 0 ? 'calling thread' : `${workers} worker threads`})`, function () {
    this.timeout(60_000)
    let fixture: Fixture
    let ends: LayerRange
    let whole: LayerRange
    let middle: LayerRange
    let input: Float32Array
    let h: number
    const sessions: KvSession[] = []

    function session (model: LayerRange, range?: { start: number, end: number }): KvSession {
      const s = model.createSession(range)
      sessions.push(s)
      return s
    }

    before(async () => {
      await selectBackend('wasm')
      fixture = await loadFixture('untied-f32')
      h = fixture.config.hiddenSize
      const source = sourceOf(fixture)
      ends = await LayerRange.load(fixture.config, source, { start: 0, end: 0, embedding: true, head: true })
      // the shard under test holds every layer and the head; the reference holds exactly [1, 3) on the calling thread
      whole = await LayerRange.load(fixture.config, source, { start: 0, end: fixture.config.numLayers, embedding: true, head: true, workers })
      middle = await LayerRange.load(fixture.config, source, { start: 1, end: 3 })
      const x = ends.embed(fixture.expected.sequence)
      input = await x.data() as Float32Array
      x.dispose()
    })

    afterEach(() => {
      for (const s of sessions) {
        s.dispose()
      }
      sessions.length = 0
    })

    after(async () => {
      ends?.dispose()
      middle?.dispose()
      await whole?.close()
    })

    it('chained sub-range sessions [0, 1), [1, 3), [3, 4) equal one session of every layer', async () => {
      expect(whole.workers).to.equal(workers)
      const full = await whole.forwardData(session(whole), input)
      let x = input
      for (const [start, end] of [[0, 1], [1, 3], [3, 4]]) {
        const s = session(whole, { start, end })
        expect(whole.sessionRange(s)).to.deep.equal({ start, end })
        x = await whole.forwardData(s, x)
        expect(s.length).to.equal(fixture.expected.sequence.length)
        // the residual after the session's last layer (last position) is the reference's
        const last = x.subarray(x.length - h)
        expect(maxAbsDiff(last, fixture.expected.debug.last_position_residual_after_each_layer[end - 1]), `after layer ${end - 1}`).to.be.below(TOL)
      }
      expect(maxAbsDiff(x, full)).to.be.below(1e-5)
    })

    it('a session of layers [1, 3) equals a shard holding exactly [1, 3), through prefill, decode and rewind, and caches only those layers', async () => {
      const x0 = await whole.forwardData(session(whole, { start: 0, end: 1 }), input)
      const sub = session(whole, { start: 1, end: 3 })
      const ref = session(middle)
      const n = fixture.expected.sequence.length
      // prefill 5 positions, then one at a time
      const got = [await whole.forwardData(sub, x0.subarray(0, 5 * h))]
      const want = [await middle.forwardData(ref, x0.subarray(0, 5 * h))]
      for (let i = 5; i < n; i++) {
        got.push(await whole.forwardData(sub, x0.subarray(i * h, (i + 1) * h)))
        want.push(await middle.forwardData(ref, x0.subarray(i * h, (i + 1) * h)))
      }
      for (let i = 0; i < got.length; i++) {
        expect(maxAbsDiff(got[i], want[i]), `step ${i}`).to.be.below(1e-5)
      }
      // the cache holds 2 layers: as much as the exact shard's, half of a session of all 4
      const all = session(whole)
      await whole.forwardData(all, input)
      expect(sub.bytes).to.equal(ref.bytes)
      expect(sub.bytes * 2).to.equal(all.bytes)
      expect(sub.bytes).to.equal(n * 2 * 2 * fixture.config.numKvHeads * fixture.config.headDim * 4)
      // rewind to 3 and recompute: the same values as the first pass
      const again = await whole.forwardData(sub, x0.subarray(3 * h), 3)
      const first = [got[0].subarray(3 * h), ...got.slice(1)]
      expect(maxAbsDiff(again, Float32Array.from(first.flatMap(a => Array.from(a))))).to.be.below(1e-5)
      expect(sub.length).to.equal(n)
      sub.truncate(1)
      expect(sub.length).to.equal(1)
      expect(sub.bytes).to.equal(2 * 2 * fixture.config.numKvHeads * fixture.config.headDim * 4)
    })

    it('logits only after the shard\'s last layer; ranges outside the held layers or empty are refused', async () => {
      const full = session(whole)
      const head = session(whole, { start: 2, end: 4 })
      const first = session(whole, { start: 0, end: 2 })
      expect([whole.endsAtHead(full), whole.endsAtHead(head), whole.endsAtHead(first)]).to.deep.equal([true, true, false])
      expect(middle.endsAtHead(session(middle))).to.equal(false)
      // forwardTokens runs embedding -> every layer -> head: a sub-range session cannot
      await whole.forwardTokensAsync(first, [1, 2]).then(() => { throw new Error('ran') }, (err) => {
        expect(err).to.have.property('code', ModelErrorCode.BAD_INPUT)
        expect(err.message).to.include('[0, 2)')
      })
      const logits = await whole.forwardTokensAsync(full, fixture.expected.sequence)
      const rows = await logits.array()
      logits.dispose()
      expect(maxAbsDiff(rows[rows.length - 1], fixture.expected.full_logits[rows.length - 1])).to.be.below(TOL)
      const shard = whole
      for (const bad of [{ start: 0, end: 5 }, { start: 2, end: 2 }, { start: 3, end: 1 }, { start: -1, end: 2 }, { start: 0.5, end: 2 }]) {
        expect(() => shard.createSession(bad), JSON.stringify(bad)).to.throw().with.property('code', ModelErrorCode.BAD_INPUT)
      }
      expect(() => middle.createSession({ start: 0, end: 2 })).to.throw(/not a non-empty part of the held \[1, 3\)/)
      // a shard holding no layers still has its (empty) whole-range session
      expect(ends.sessionRange(session(ends))).to.deep.equal({ start: 0, end: 0 })
    })
  })
}
