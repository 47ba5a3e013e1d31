/**
 * The proposal fold through a real chain store: acceptance with quorum, the
 * version chain and its deltas per unit, rejection with a reason, pending,
 * stale, superseded, stale governance, and the attestations that do not
 * count (outsiders, equivocation, forged seed, a sample that is not the
 * seed's, a lying verdict, the wrong datasets).
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { evaluateAttestation } from '../../src/learning/fold/attestations.ts'
import { readModelRecords } from '../../src/learning/fold/blocks.ts'
import { foldModel } from '../../src/learning/fold/fold.ts'
import { nextVersionId } from '../../src/learning/fold/ids.ts'
import { findProposal, findVersion, proposalsToAttest } from '../../src/learning/fold/query.ts'
import { signSeed } from '../../src/learning/pol/seed.ts'
import { encodeAttestationPayload } from '../../src/protocols/attestation.ts'
import { encodeParams } from '../../src/protocols/params.ts'
import { removeDir, signHeader, signer, tempDir } from '../chain/helpers.ts'
import { attestationFields, bytes, learningHeader } from '../chain/learning-helpers.ts'
import { World, evalWindowsOf, hexOf } from './fold-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { GovernanceNode } from '../../src/learning/fold/governance.ts'
import type { ModelFold, ProposalExplain } from '../../src/learning/fold/types.ts'
import type { ParamsBody } from '../../src/protocols/params.ts'

const [alice, bob, carol, dave] = [1, 2, 3, 4].map(n => signer(n))
const pete = signer(10)
const oscar = signer(11)

describe('learning/fold: proposals and versions', function () {
  this.timeout(60_000)
  let dir: string
  let stores: ChainStore[]

  beforeEach(async () => {
    dir = await tempDir('bly-fold-prop-')
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

  /** a model validated by alice, bob and carol (n = 3, quorum 2); returns the world and the governance state */
  async function threeValidators (genesis?: ParamsBody | null): Promise<{ world: World, g: Uint8Array }> {
    const world = await new World(alice).init({ genesis })
    const g1 = (await world.govern([alice], { kind: 'validators.add', key: bob.publicKey }, world.g0)).next
    const g = (await world.govern([alice, bob], { kind: 'validators.add', key: carol.publicKey }, g1)).next
    return { world, g }
  }

  function proposal (f: ModelFold, id: Uint8Array): ProposalExplain {
    const p = findProposal(f, hexOf(id))
    expect(p, 'proposal in the fold').to.not.equal(undefined)
    return p as ProposalExplain
  }

  it('accepted with 2 of 3 accepting attestations: V1 = sha256("bly/version/v1" || V0 || P), its deltas per unit, the median gain', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g, [0, 2])
    await world.attest(alice, p.id)
    let f = await fold(world)
    expect(proposal(f, p.id)).to.include({ status: 'pending', reason: 'quorum', accepts: 1, validators: 3, quorum: 2 })
    expect(proposalsToAttest(f, hexOf(bob.publicKey)).map(x => x.id)).to.deep.equal([hexOf(p.id)])
    expect(proposalsToAttest(f, hexOf(alice.publicKey))).to.deep.equal([])
    await world.attest(bob, p.id)
    f = await fold(world)
    const shown = proposal(f, p.id)
    expect(shown).to.include({ status: 'accepted', reason: 'ok', accepts: 2, rejects: 0, version: hexOf(p.next) })
    expect(shown.gain).to.be.within(0.015, 0.025)
    expect(shown.attestations.every(a => a.counted && a.effectiveVerdict === 'accept')).to.equal(true)
    expect(shown.attestations[0].baseLoss).to.be.within(2, 2.4)
    expect(f.live).to.deep.equal({
      id: hexOf(nextVersionId(world.v0, p.id)),
      index: 1,
      proposal: hexOf(p.id),
      governance: hexOf(g),
      acceptedDeltas: [{ proposal: hexOf(p.id), delta: hexOf(p.deltas[0]), unit: 0 }, { proposal: hexOf(p.id), delta: hexOf(p.deltas[1]), unit: 2 }],
      units: [{ unit: 0, deltas: [hexOf(p.deltas[0])] }, { unit: 2, deltas: [hexOf(p.deltas[1])] }]
    })
    expect(f.versions.map(v => v.id)).to.deep.equal([hexOf(world.v0), hexOf(p.next)])
  })

  it('a second accepted proposal builds on V1: the deltas of each unit in version order', async () => {
    const { world, g } = await threeValidators()
    const p1 = await world.proposal(pete, world.v0, g, [0, 1])
    await world.attest(alice, p1.id)
    await world.attest(carol, p1.id)
    const p2 = await world.proposal(dave, p1.next, g, [1, 2])
    await world.attest(bob, p2.id)
    await world.attest(carol, p2.id)
    const f = await fold(world)
    expect(f.live).to.include({ index: 2, id: hexOf(p2.next), proposal: hexOf(p2.id) })
    expect(f.live.units).to.deep.equal([
      { unit: 0, deltas: [hexOf(p1.deltas[0])] },
      { unit: 1, deltas: [hexOf(p1.deltas[1]), hexOf(p2.deltas[0])] },
      { unit: 2, deltas: [hexOf(p2.deltas[1])] }
    ])
    expect(findVersion(f, hexOf(p1.next))?.units).to.have.length(2)
  })

  it('rejected when quorum can no longer be reached (rejects > n - quorum), with the most common reason; ties: the smallest code', async () => {
    const { world, g } = await threeValidators()
    const tie = await world.proposal(pete, world.v0, g, [0])
    await world.attest(alice, tie.id, { quality: 'noisy' }) // header says accept, numbers: not-significant
    await world.attest(bob, tie.id, { quality: 'no-gain', verdict: 'reject', reason: 'insufficient-gain' })
    const majority = await world.proposal(pete, world.v0, g, [1])
    await world.attest(alice, majority.id, { verdict: 'reject', reason: 'shape', measurements: [] })
    await world.attest(bob, majority.id, { verdict: 'reject', reason: 'shape', measurements: [] })
    await world.attest(carol, majority.id, { verdict: 'reject', reason: 'malformed', measurements: [] })
    const f = await fold(world)
    expect(proposal(f, tie.id)).to.include({ status: 'rejected', reason: 'insufficient-gain', rejects: 2 })
    expect(proposal(f, tie.id).attestations.map(a => a.effectiveReason).sort()).to.deep.equal(['insufficient-gain', 'not-significant'])
    expect(proposal(f, majority.id)).to.include({ status: 'rejected', reason: 'shape', rejects: 3 })
    expect(f.live.index).to.equal(0)
  })

  it('one reject of 3 leaves it pending (quorum still reachable)', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    await world.attest(alice, p.id, { quality: 'no-gain', verdict: 'reject', reason: 'insufficient-gain' })
    const f = await fold(world)
    expect(proposal(f, p.id)).to.include({ status: 'pending', reason: 'quorum', rejects: 1, accepts: 0 })
  })

  it('superseded: two proposals on one base both reach quorum: the smallest id is accepted, the other rejected', async () => {
    const { world, g } = await threeValidators()
    const a = await world.proposal(pete, world.v0, g, [0])
    const b = await world.proposal(dave, world.v0, g, [1])
    for (const p of [a, b]) {
      await world.attest(alice, p.id)
      await world.attest(bob, p.id)
    }
    const f = await fold(world)
    const [first, second] = [a, b].sort((x, y) => hexOf(x.id) < hexOf(y.id) ? -1 : 1)
    expect(proposal(f, first.id)).to.include({ status: 'accepted' })
    expect(proposal(f, second.id)).to.include({ status: 'rejected', reason: 'superseded' })
    expect(f.live.id).to.equal(hexOf(first.next))
  })

  it('stale: a proposal reaching quorum on a base that never became live (built on a superseded one)', async () => {
    const { world, g } = await threeValidators()
    const a = await world.proposal(pete, world.v0, g, [0])
    const b = await world.proposal(dave, world.v0, g, [1])
    for (const p of [a, b]) {
      await world.attest(alice, p.id)
      await world.attest(bob, p.id)
    }
    const [, loser] = [a, b].sort((x, y) => hexOf(x.id) < hexOf(y.id) ? -1 : 1)
    const onLoser = await world.proposal(loser === a ? pete : dave, loser.next, g, [2])
    await world.attest(alice, onLoser.id)
    await world.attest(carol, onLoser.id)
    const f = await fold(world)
    expect(proposal(f, onLoser.id)).to.include({ status: 'rejected', reason: 'stale', accepts: 2 })
    expect(f.live.index).to.equal(1)
  })

  it('stale-governance: a proposal naming an unknown governance state, or one older than its base version\'s', async () => {
    const { world, g } = await threeValidators()
    const unknown = await world.proposal(pete, world.v0, new Uint8Array(32).fill(5), [0])
    const p1 = await world.proposal(pete, world.v0, g, [1])
    await world.attest(alice, p1.id)
    await world.attest(bob, p1.id)
    // on V1, naming G0 (where alice alone is the set) after V1 was accepted in a later state
    const old = await world.proposal(pete, p1.next, world.g0, [2])
    await world.attest(alice, old.id)
    const f = await fold(world)
    expect(proposal(f, unknown.id)).to.include({ status: 'rejected', reason: 'stale-governance', validators: null })
    expect(proposal(f, old.id)).to.include({ status: 'rejected', reason: 'stale-governance', accepts: 1, quorum: 1 })
    expect(f.live.index).to.equal(1)
  })

  it('attestations from keys outside the set are ignored (not-validator), whatever they say', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    await world.attest(oscar, p.id)
    await world.attest(dave, p.id)
    await world.attest(pete, p.id)
    await world.attest(alice, p.id)
    const f = await fold(world)
    const shown = proposal(f, p.id)
    expect(shown).to.include({ status: 'pending', accepts: 1 })
    expect(shown.attestations.filter(a => a.ignored === 'not-validator').map(a => a.validator).sort()).to.deep.equal([oscar, dave, pete].map(s => hexOf(s.publicKey)).sort())
  })

  it('two attestations of one proposal by one validator: both ignored (equivocation)', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    await world.attest(alice, p.id)
    await world.attest(alice, p.id, { verdict: 'reject', reason: 'stale', measurements: [] })
    await world.attest(bob, p.id)
    const f = await fold(world)
    const shown = proposal(f, p.id)
    expect(shown).to.include({ status: 'pending', accepts: 1, rejects: 0 })
    expect(shown.attestations.filter(a => a.ignored === 'equivocation')).to.have.length(2)
    expect(shown.attestations.filter(a => a.ignored === 'equivocation').every(a => a.validator === hexOf(alice.publicKey))).to.equal(true)
  })

  it('a sample that is not the seed\'s (the validator chose its windows) is ignored (sample)', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    const honest = world.measure(await signSeed(bob, p.id), 'gain')
    // the same numbers on the first 64 eval windows instead of the sampled ones
    const chosen = [{ ...honest[0], windows: [...evalWindowsOf(world.dataset)].slice(0, 64) }]
    await world.attest(bob, p.id, { measurements: chosen })
    // a sample of another proposal's seed
    const other = world.measure(await signSeed(carol, world.dataset), 'gain')
    await world.attest(carol, p.id, { measurements: other })
    await world.attest(alice, p.id)
    const f = await fold(world)
    const shown = proposal(f, p.id)
    expect(shown.attestations.filter(a => a.ignored === 'sample').map(a => a.validator).sort()).to.deep.equal([bob, carol].map(s => hexOf(s.publicKey)).sort())
    expect(shown).to.include({ status: 'pending', accepts: 1 })
  })

  it('a forged seedSig never enters the store (ERR_ATTESTATION_BLOCK_SEED); the fold ignores one all the same (bad-seed)', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    const store = await world.store(`${dir}/forged`)
    stores.push(store)
    // bob publishes with pete's seed (pete knows which windows that samples)
    const forgedSig = await signSeed(pete, p.id)
    const payload = encodeAttestationPayload(world.measure(forgedSig, 'gain'))
    const forged = await signHeader(learningHeader(bob, BlockType.Attestation, attestationFields(world.model, p.id, forgedSig), [p.id], payload), bob)
    try {
      await store.addBlock(forged.encoded, payload)
      expect.fail('a forged seedSig was stored')
    } catch (err: any) {
      expect(err.code).to.equal('ERR_ATTESTATION_BLOCK_SEED')
    }
    // the fold's own check, on a record that bypassed the store
    const records = await readModelRecords(store, world.model)
    const record = records.proposals.find(x => x.idHex === hexOf(p.id))
    const gov: GovernanceNode = { state: { id: hexOf(g), index: 2, motion: null, validators: [], params: null, quorum: 2 }, validators: new Set([alice, bob, carol].map(s => hexOf(s.publicKey))), params: world.params }
    const attestation = { id: forged.id, idHex: hexOf(forged.id), author: bob.publicKey, authorHex: hexOf(bob.publicKey), proposal: hexOf(p.id), verdict: 'accept', reason: 'ok', seedSig: forgedSig, measurements: world.measure(forgedSig, 'gain'), payloadMissing: false }
    const lookup = async (id: Uint8Array): Promise<Uint32Array> => evalWindowsOf(id)
    expect((await evaluateAttestation(attestation, record as any, gov, false, lookup)).explain).to.include({ counted: false, ignored: 'bad-seed' })
    const realSig = await signSeed(bob, p.id)
    expect((await evaluateAttestation({ ...attestation, seedSig: realSig, measurements: world.measure(realSig, 'gain') }, record as any, gov, false, lookup)).explain).to.include({ counted: true, effectiveVerdict: 'accept' })
  })

  it('a verdict that lies (accept with numbers that fail the rule) counts as a reject with the rule\'s reason', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    await world.attest(alice, p.id, { quality: 'no-gain' })
    await world.attest(bob, p.id, { quality: 'no-gain' })
    await world.attest(carol, p.id)
    const f = await fold(world)
    const shown = proposal(f, p.id)
    expect(shown).to.include({ status: 'rejected', reason: 'insufficient-gain', accepts: 1, rejects: 2 })
    const liars = shown.attestations.filter(a => a.verdictMismatch === true)
    expect(liars).to.have.length(2)
    expect(liars.every(a => a.verdict === 'accept' && a.effectiveVerdict === 'reject' && a.effectiveReason === 'insufficient-gain')).to.equal(true)
    expect(f.live.index).to.equal(0)
  })

  it('regression datasets: measured after the proposal\'s dataset in params order; a regression rejects; another order is ignored (datasets)', async () => {
    const world = await new World(alice).init({ genesis: null })
    const r1 = await world.addDataset('held-out-1')
    const r2 = await world.addDataset('held-out-2')
    const regressionDatasets = [r1, r2].sort((x, y) => hexOf(x) < hexOf(y) ? -1 : 1)
    const payload = encodeParams({ regressionDatasets })
    await world.add(learningHeader(alice, BlockType.Params, { model: bytes(world.model) }, [world.model], payload), alice, payload)
    world.params = { ...world.params, regressionDatasets }
    const good = await world.proposal(pete, world.v0, world.g0, [0])
    await world.attest(alice, good.id)
    const worse = await world.proposal(dave, world.v0, world.g0, [1])
    await world.attest(alice, worse.id, { quality: 'regress' })
    const reordered = await world.proposal(pete, world.v0, world.g0, [2])
    const m = world.measure(await signSeed(alice, reordered.id), 'gain')
    await world.attest(alice, reordered.id, { measurements: [m[0], m[2], m[1]] })
    const f = await fold(world)
    expect(proposal(f, good.id)).to.include({ status: 'accepted' })
    expect(proposal(f, worse.id)).to.include({ status: 'rejected', reason: 'regression' })
    expect(proposal(f, reordered.id).attestations[0]).to.include({ ignored: 'datasets' })
  })

  it('an attestation whose dataset windows this node cannot read is reported (windows-unavailable), not counted', async () => {
    const { world, g } = await threeValidators()
    const p = await world.proposal(pete, world.v0, g)
    await world.attest(alice, p.id)
    const store = await world.store(`${dir}/nowindows`)
    stores.push(store)
    const f = await foldModel(store, world.model, { evalWindows: async () => { throw new Error('no tokenizer') } })
    expect(proposal(f, p.id).attestations[0]).to.include({ counted: false, ignored: 'windows-unavailable' })
  })

  it('a model id that is no manifest: ERR_FOLD_MODEL_NOT_FOUND', async () => {
    const { world } = await threeValidators()
    const store = await world.store(`${dir}/none`)
    stores.push(store)
    try {
      await foldModel(store, world.dataset, { evalWindows: async (id) => evalWindowsOf(id) })
      expect.fail('folded a dataset as a model')
    } catch (err: any) {
      expect(err.code).to.equal('ERR_FOLD_MODEL_NOT_FOUND')
    }
  })
})
