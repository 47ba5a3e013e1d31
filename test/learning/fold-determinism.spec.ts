/**
 * The fold is a function of the set of blocks: one set of learning blocks
 * (governance with a superseded and a non-member motion; proposals
 * accepted, superseded, stale, rejected, pending; equivocating, outside and
 * lying attestations) added to fresh real chain stores in different orders
 * (as built, reversed: every block an orphan until its parents arrive, and
 * seeded shuffles) gives deep-equal fold results.
 */
import { expect } from 'aegir/chai'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { Lcg, World, hexOf } from './fold-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'

const [alice, bob, carol, dave] = [1, 2, 3, 4].map(n => signer(n))
const pete = signer(10)
const oscar = signer(11)

describe('learning/fold: determinism', function () {
  this.timeout(120_000)
  let dir: string
  const stores: ChainStore[] = []

  before(async () => {
    dir = await tempDir('bly-fold-det-')
  })

  after(async () => {
    await Promise.all(stores.map(async s => s.stop()))
    await removeDir(dir)
  })

  async function build (): Promise<World> {
    const world = await new World(alice).init({ units: 4 })
    const g1 = (await world.govern([alice], { kind: 'validators.add', key: bob.publicKey }, world.g0)).next
    await world.motion(oscar, { kind: 'validators.add', key: oscar.publicKey }, g1) // a non-member's motion
    const a = await world.govern([alice, bob], { kind: 'validators.add', key: carol.publicKey }, g1)
    const b = await world.govern([bob, alice], { kind: 'validators.add', key: dave.publicKey }, g1)
    // a and b both reach quorum on g1: the smaller id applies
    const g2 = hexOf(a.motion) < hexOf(b.motion) ? a.next : b.next
    const p1 = await world.proposal(pete, world.v0, g2, [0, 1])
    const p1b = await world.proposal(dave, world.v0, g2, [2])
    for (const p of [p1, p1b]) {
      await world.attest(alice, p.id)
      await world.attest(bob, p.id)
    }
    const [first, second] = [p1, p1b].sort((x, y) => hexOf(x.id) < hexOf(y.id) ? -1 : 1)
    await world.proposal(pete, second.next, g2, [3]) // on a base that never becomes live
    const p2 = await world.proposal(pete, first.next, g2, [1, 3])
    await world.attest(alice, p2.id, { quality: 'noisy' })
    await world.attest(bob, p2.id, { quality: 'gain' })
    await world.attest(bob, p2.id, { verdict: 'reject', reason: 'stale', measurements: [] }) // equivocation
    await world.attest(oscar, p2.id)
    const p3 = await world.proposal(pete, first.next, g2, [0])
    await world.attest(alice, p3.id, { quality: 'no-gain' })
    await world.attest(bob, p3.id, { quality: 'no-gain', verdict: 'reject', reason: 'insufficient-gain' })
    const p4 = await world.proposal(dave, first.next, g2, [2])
    await world.attest(bob, p4.id)
    return world
  }

  it('identical results from every arrival order', async () => {
    const world = await build()
    const n = world.blocks.length
    expect(n).to.be.within(30, 250) // under the orphan pool bound
    const asBuilt = world.blocks.map((_, i) => i)
    const orders = [asBuilt, [...asBuilt].reverse(), new Lcg(1).shuffle(asBuilt), new Lcg(2).shuffle(asBuilt), new Lcg(3).shuffle(asBuilt)]
    const folds = []
    for (const [k, order] of orders.entries()) {
      const store = await world.store(`${dir}/order-${k}`, order)
      stores.push(store)
      const m = store.metrics()
      if (k === 1) {
        // reversed: all but the manifest waited in the orphan pool
        expect(m.orphansAccepted).to.be.greaterThan(n / 2)
      }
      folds.push(await world.fold(store))
    }
    for (const f of folds.slice(1)) {
      expect(f).to.deep.equal(folds[0])
    }
    // and the result is not trivial
    const f = folds[0]
    expect(f.governance.history).to.have.length(3)
    expect(f.governance.motions.map(m => m.status + ':' + m.reason).sort()).to.deep.equal(['applied:ok', 'applied:ok', 'void:not-member', 'void:superseded'])
    expect(f.versions).to.have.length(2)
    const statuses = f.proposals.map(p => `${p.status}:${p.reason}`).sort()
    expect(statuses).to.deep.equal(['accepted:ok', 'pending:quorum', 'pending:quorum', 'pending:quorum', 'rejected:insufficient-gain', 'rejected:superseded'])
    const p2 = f.proposals.find(p => p.attestations.some(a => a.ignored === 'equivocation'))
    expect(p2?.attestations.map(a => a.ignored ?? a.effectiveReason).sort()).to.deep.equal(['equivocation', 'equivocation', 'not-significant', 'not-validator'])
  })
})
