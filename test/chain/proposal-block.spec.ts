/**
 * Header rules of the Proposal block (type 4, chain A): fields, no payload,
 * its manifest and dataset among its parents, and its Delta parents: at
 * least one, all of its model and base, all its author's own, one per unit.
 * One test per rule, through a real chain store.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { header, openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import { DELTA_PAYLOAD, add, addLayer, addManifest, addTextDataset, bytes, deltaHeader, learningHeader, proposalFields, refused, str, uint } from './learning-helpers.ts'
import type { Fields } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader } from '../../src/chain/types.ts'

const alice = signer(1)
const bob = signer(2)
const carol = signer(3)
const BASE = new Uint8Array(32).fill(0xba)
const GOV = new Uint8Array(32).fill(0x60)

describe('Proposal block header rules', () => {
  let dir: string
  let store: ChainStore
  let model: Uint8Array
  let layers: Uint8Array[]
  let dataset: Uint8Array

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir)
    model = await addManifest(store, alice)
    layers = [await addLayer(store, alice, model, 0), await addLayer(store, alice, model, 1)]
    dataset = await addTextDataset(store, carol)
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  async function delta (unit: number, s = bob, over: Fields = {}): Promise<Uint8Array> {
    return add(store, deltaHeader(s, model, layers[unit], unit, BASE, over), s, DELTA_PAYLOAD)
  }

  function proposal (deltas: Uint8Array[], over: Fields = {}, parents = [model, dataset, ...deltas], s = bob): BlockHeader {
    return learningHeader(s, BlockType.Proposal, proposalFields(model, BASE, GOV, dataset, over), parents)
  }

  it('accepts a proposal of the proposer\'s own deltas, one per unit, naming its model and base', async () => {
    const deltas = [await delta(0), await delta(1)]
    const id = await add(store, proposal(deltas), bob)
    expect((await store.get(id))?.header.parents).to.have.length(4)
  })

  it('ERR_PROPOSAL_BLOCK_FIELDS: every field missing or of the wrong kind, an extra field', async () => {
    const deltas = [await delta(0)]
    for (const key of ['model', 'base', 'governance', 'dataset', 'claimedBase', 'claimedAfter']) {
      await refused(store, proposal(deltas, { [key]: undefined }), bob, 'ERR_PROPOSAL_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
      const wrong = key.startsWith('claimed') ? str('1') : bytes(new Uint8Array(31))
      await refused(store, proposal(deltas, { [key]: wrong }), bob, 'ERR_PROPOSAL_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
    }
    await refused(store, proposal(deltas, { note: uint(1) }), bob, 'ERR_PROPOSAL_BLOCK_FIELDS', /may not carry field 'note'/)
  })

  it('ERR_PROPOSAL_BLOCK_PAYLOAD: a proposal with a payload', async () => {
    const deltas = [await delta(0)]
    const payload = new Uint8Array(10)
    await refused(store, learningHeader(bob, BlockType.Proposal, proposalFields(model, BASE, GOV, dataset), [model, dataset, ...deltas], payload), bob, 'ERR_PROPOSAL_BLOCK_PAYLOAD', /carries no payload/, payload)
  })

  it('ERR_PROPOSAL_BLOCK_PARENT: not listing its manifest or its dataset; a dataset parent that is not a Dataset; a model parent that is not a ModelManifest', async () => {
    const deltas = [await delta(0)]
    await refused(store, proposal(deltas, {}, [dataset, ...deltas]), bob, 'ERR_PROPOSAL_BLOCK_PARENT', /model manifest \('model'\)/)
    await refused(store, proposal(deltas, {}, [model, ...deltas]), bob, 'ERR_PROPOSAL_BLOCK_PARENT', /Dataset block \('dataset'\)/)
    const note = await add(store, header({ author: bob.publicKey, type: BlockType.Note }), bob)
    await refused(store, proposal(deltas, { dataset: bytes(note) }, [model, note, ...deltas]), bob, 'ERR_PROPOSAL_BLOCK_PARENT', /'dataset' parent of a Proposal block is not a Dataset block/)
    await refused(store, proposal(deltas, { model: bytes(note) }, [note, dataset, ...deltas]), bob, 'ERR_PROPOSAL_BLOCK_PARENT', /is not a ModelManifest block/)
  })

  it('ERR_PROPOSAL_BLOCK_DELTAS: no Delta parent', async () => {
    await refused(store, proposal([]), bob, 'ERR_PROPOSAL_BLOCK_DELTAS', /at least one Delta block/)
  })

  it('ERR_PROPOSAL_BLOCK_DELTAS: a Delta for another model or another base version', async () => {
    const other = await addManifest(store, carol, 1n)
    const otherLayer = await addLayer(store, carol, other, 0)
    const foreign = await add(store, learningHeader(bob, BlockType.Delta, { model: bytes(other), unit: uint(0), base: bytes(BASE), codec: str('f32'), tensors: uint(1) }, [other, otherLayer], DELTA_PAYLOAD), bob, DELTA_PAYLOAD)
    await refused(store, proposal([foreign]), bob, 'ERR_PROPOSAL_BLOCK_DELTAS', /names another model/)
    const stale = await delta(0, bob, { base: bytes(new Uint8Array(32).fill(1)) })
    await refused(store, proposal([stale]), bob, 'ERR_PROPOSAL_BLOCK_DELTAS', /another version than the proposal's base/)
  })

  it('ERR_PROPOSAL_BLOCK_DELTA_AUTHOR: re-signing someone else\'s delta as one\'s own proposal', async () => {
    const bobs = await delta(0, bob)
    // carol proposes bob's delta: refused, whoever lists it
    await refused(store, proposal([bobs], {}, undefined, carol), carol, 'ERR_PROPOSAL_BLOCK_DELTA_AUTHOR', /authored by another key/)
    const carols = await delta(1, carol)
    await refused(store, proposal([bobs, carols]), bob, 'ERR_PROPOSAL_BLOCK_DELTA_AUTHOR', /authored by another key/)
  })

  it('ERR_PROPOSAL_BLOCK_DELTA_UNITS: two deltas of one unit', async () => {
    const a = await delta(0, bob, { codec: str('f32') })
    const b = await delta(0, bob, { codec: str('sparse') })
    await refused(store, proposal([a, b]), bob, 'ERR_PROPOSAL_BLOCK_DELTA_UNITS', /two Delta parents of unit 0/)
  })

  it('ERR_PROPOSAL_BLOCK_DELTA_AUTHOR: also when the foreign delta arrives after the proposal (orphan)', async () => {
    const late = await signHeader(deltaHeader(carol, model, layers[0], 0, BASE), carol)
    const orphan = await signHeader(proposal([late.id]), bob)
    expect(await store.addBlock(orphan.encoded)).to.equal('orphaned')
    expect(await store.addBlock(late.encoded, DELTA_PAYLOAD)).to.equal('added')
    expect(await store.has(orphan.id)).to.equal(false)
    expect(store.metrics().rejected.ERR_PROPOSAL_BLOCK_DELTA_AUTHOR).to.equal(1)
  })
})
