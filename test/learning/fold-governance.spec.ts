/**
 * The governance fold through a real chain store: genesis params, the
 * validator set changed by motions and votes with ceil(2n/3) of the set at
 * the motion's base, non-members' motions and votes, the last validator,
 * same-base motions (smallest id wins), params.set.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { nextGovernanceId } from '../../src/learning/fold/ids.ts'
import { pendingMotions, samePendingMotion } from '../../src/learning/fold/query.ts'
import { encodeParams } from '../../src/protocols/params.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { bytes, learningHeader } from '../chain/learning-helpers.ts'
import { World, hexOf } from './fold-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { ModelFold } from '../../src/learning/fold/types.ts'

const [alice, bob, carol, dave, erin] = [1, 2, 3, 4, 5].map(n => signer(n))
const key = (s: { publicKey: Uint8Array }): string => hexOf(s.publicKey)
const add = (s: { publicKey: Uint8Array }): { kind: 'validators.add', key: Uint8Array } => ({ kind: 'validators.add', key: s.publicKey })
const remove = (s: { publicKey: Uint8Array }): { kind: 'validators.remove', key: Uint8Array } => ({ kind: 'validators.remove', key: s.publicKey })

describe('learning/fold: governance', function () {
  this.timeout(60_000)
  let dir: string
  let stores: ChainStore[]

  beforeEach(async () => {
    dir = await tempDir('bly-fold-gov-')
    stores = []
  })

  afterEach(async () => {
    await Promise.all(stores.map(async s => s.stop()))
    await removeDir(dir)
  })

  async function fold (world: World): Promise<ModelFold> {
    const store = await world.store(`${dir}/s${stores.length}`)
    stores.push(store)
    return world.fold(store)
  }

  function motion (f: ModelFold, id: Uint8Array): ModelFold['governance']['motions'][number] {
    const m = f.governance.motions.find(x => x.id === hexOf(id))
    expect(m, 'motion in the fold').to.not.equal(undefined)
    return m as ModelFold['governance']['motions'][number]
  }

  it('genesis: G0 = sha256("bly/governance/v1" || model) holds the importer and the genesis params', async () => {
    const world = await new World(alice).init({ genesis: { minGainPpm: 7000 } })
    const f = await fold(world)
    expect(f.genesis).to.include({ status: 'ok' })
    expect(f.governance.history).to.have.length(1)
    expect(f.governance.current).to.deep.equal({
      id: hexOf(world.g0),
      index: 0,
      motion: null,
      validators: [key(alice)],
      params: { quorumNum: 2, quorumDen: 3, minGainPpm: 7000, maxRegressionPpm: 20000, tCritMilli: 1645, sampleWindows: 64, regressionDatasets: [], genesisAllocation: 1_000_000_000_000, priceLayerPosition: 1, rewardPerMicroNat: 1000, validatorReward: 1_000_000 },
      quorum: 1
    })
  })

  it('genesis: missing, or two Params blocks by the importer: a clear state, and nothing is judged', async () => {
    const none = await new World(alice).init({ genesis: null })
    const m = await none.motion(alice, add(bob), none.g0)
    const f = await fold(none)
    expect(f.genesis).to.deep.equal({ status: 'missing' })
    expect(f.governance.current.params).to.equal(null)
    expect(motion(f, m)).to.include({ status: 'pending', reason: 'no-params' })

    const two = await new World(alice).init()
    const payload = encodeParams({ minGainPpm: 1 })
    await two.add(learningHeader(alice, BlockType.Params, { model: bytes(two.model) }, [two.model], payload), alice, payload)
    const g = await fold(two)
    expect(g.genesis.status).to.equal('ambiguous')
    expect((g.genesis as { blocks: string[] }).blocks).to.have.length(2)
  })

  it('1 of 1: the importer alone adds a validator (quorum ceil(2 x 1 / 3) = 1)', async () => {
    const world = await new World(alice).init()
    const { motion: m, next } = await world.govern([alice], add(bob), world.g0)
    const f = await fold(world)
    expect(motion(f, m)).to.include({ status: 'applied', reason: 'ok', count: 1, quorum: 1, result: hexOf(next) })
    expect(f.governance.current).to.include({ id: hexOf(next), index: 1, motion: hexOf(m), quorum: 2 })
    expect(f.governance.current.validators).to.deep.equal([key(alice), key(bob)].sort())
    expect(next).to.deep.equal(nextGovernanceId(world.g0, m))
  })

  it('2 of 3: one signer is not enough, the motion and one vote are (quorum ceil(2 x 3 / 3) = 2)', async () => {
    const world = await new World(alice).init()
    const g1 = (await world.govern([alice], add(bob), world.g0)).next
    const g2 = (await world.govern([alice, bob], add(carol), g1)).next // 2 of 2
    const lone = await world.motion(alice, add(dave), g2)
    let f = await fold(world)
    expect(f.governance.current.id).to.equal(hexOf(g2))
    expect(f.governance.current.quorum).to.equal(2)
    expect(motion(f, lone)).to.include({ status: 'pending', reason: 'quorum', count: 1, quorum: 2 })
    expect(pendingMotions(f).map(m => m.id)).to.deep.equal([hexOf(lone)])
    expect(samePendingMotion(f, 'validators.add', key(dave))?.id).to.equal(hexOf(lone))
    await world.vote(carol, lone)
    f = await fold(world)
    expect(motion(f, lone)).to.include({ status: 'applied', count: 2, quorum: 2 })
    expect(f.governance.current.validators).to.have.length(4)
  })

  it('3 of 4: two signers are not enough, three are (quorum ceil(2 x 4 / 3) = 3)', async () => {
    const world = await new World(alice).init()
    let g = (await world.govern([alice], add(bob), world.g0)).next
    g = (await world.govern([alice, bob], add(carol), g)).next
    g = (await world.govern([alice, bob], add(dave), g)).next
    const m = await world.motion(bob, remove(carol), g)
    await world.vote(dave, m)
    let f = await fold(world)
    expect(f.governance.current.validators).to.have.length(4)
    expect(motion(f, m)).to.include({ status: 'pending', count: 2, quorum: 3 })
    await world.vote(alice, m)
    f = await fold(world)
    expect(motion(f, m)).to.include({ status: 'applied', count: 3, quorum: 3 })
    expect(f.governance.current.validators).to.deep.equal([key(alice), key(bob), key(dave)].sort())
  })

  it('a motion by a non-member is void (not-member) even with every member voting; a non-member\'s vote is not counted', async () => {
    const world = await new World(alice).init()
    const g1 = (await world.govern([alice], add(bob), world.g0)).next
    const outsider = await world.motion(erin, add(erin), g1)
    await world.vote(alice, outsider)
    await world.vote(bob, outsider)
    const m = await world.motion(alice, add(carol), g1)
    await world.vote(erin, m)
    const f = await fold(world)
    expect(motion(f, outsider)).to.include({ status: 'void', reason: 'not-member' })
    expect(motion(f, m)).to.include({ status: 'pending', count: 1, quorum: 2 })
    expect(motion(f, m).signers).to.deep.equal([{ key: key(alice), counted: true }, { key: key(erin), counted: false }].sort((a, b) => a.key < b.key ? -1 : 1))
    expect(f.governance.current.validators).to.deep.equal([key(alice), key(bob)].sort())
  })

  it('removing the last validator is refused (last-validator); removing a non-member and adding a member are void', async () => {
    const world = await new World(alice).init()
    const last = await world.motion(alice, remove(alice), world.g0)
    const notIn = await world.motion(alice, remove(bob), world.g0)
    const again = await world.motion(alice, add(alice), world.g0)
    const f = await fold(world)
    expect(motion(f, last)).to.include({ status: 'void', reason: 'last-validator' })
    expect(motion(f, notIn)).to.include({ status: 'void', reason: 'not-a-validator' })
    expect(motion(f, again)).to.include({ status: 'void', reason: 'already-member' })
    expect(f.governance.current.validators).to.deep.equal([key(alice)])
  })

  it('two motions on one state both reaching quorum: the smallest id applies, the other is superseded; a pending one goes stale', async () => {
    const world = await new World(alice).init()
    const a = await world.motion(alice, add(bob), world.g0)
    const b = await world.motion(alice, add(carol), world.g0)
    const g1 = (await world.govern([alice], add(dave), world.g0)).motion
    const f = await fold(world)
    const ids = [a, b, g1].map(hexOf).sort()
    expect(motion(f, Buffer.from(ids[0], 'hex'))).to.include({ status: 'applied' })
    expect(f.governance.motions.filter(m => m.status === 'void' && m.reason === 'superseded').map(m => m.id)).to.deep.equal(ids.slice(1))
    expect(f.governance.history).to.have.length(2)
    // a motion on G0 that had not reached quorum is stale once another applied there
    const world2 = await new World(alice).init()
    const g = (await world2.govern([alice], add(bob), world2.g0)).next
    const pending = await world2.motion(alice, add(carol), g)
    const winner = await world2.motion(bob, add(dave), g)
    await world2.vote(alice, winner)
    const f2 = await fold(world2)
    expect(motion(f2, winner)).to.include({ status: 'applied' })
    expect(motion(f2, pending)).to.include({ status: 'void', reason: 'stale' })
  })

  it('a motion on an unknown state is void (unknown-base)', async () => {
    const world = await new World(alice).init()
    const m = await world.motion(alice, add(bob), new Uint8Array(32).fill(9))
    const f = await fold(world)
    expect(motion(f, m)).to.include({ status: 'void', reason: 'unknown-base', quorum: null })
  })

  it('params.set changes the params (and the quorum) of the next state; an invalid result is void', async () => {
    const world = await new World(alice).init()
    const g1 = (await world.govern([alice], add(bob), world.g0)).next
    const g2 = (await world.govern([alice, bob], add(carol), g1)).next
    const g3 = (await world.govern([alice, bob], { kind: 'params.set', params: { quorumNum: 1, quorumDen: 1, minGainPpm: 100 } }, g2)).next
    const bad = await world.motion(alice, { kind: 'params.set', params: { quorumDen: 4 } }, g3) // 1/4: under a half
    const f = await fold(world)
    expect(f.governance.current.id).to.equal(hexOf(g3))
    expect(f.governance.current.params).to.include({ quorumNum: 1, quorumDen: 1, minGainPpm: 100 })
    expect(f.governance.current.quorum).to.equal(3)
    expect(motion(f, bad)).to.include({ status: 'void', reason: 'invalid-params' })
    expect(f.governance.history.map(h => h.quorum)).to.deep.equal([1, 2, 2, 3])
  })
})
