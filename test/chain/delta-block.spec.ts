/**
 * Header rules of the Delta block (type 17, chain B): fields, codec,
 * payload, and the parents it must list (its manifest and a Layer block of
 * its model and unit). One test per rule, through a real chain store.
 */
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { header, openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import { DELTA_PAYLOAD, add, addLayer, addManifest, bytes, deltaHeader, layerHeader, refused, str, uint } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'

const alice = signer(1)
const bob = signer(2)
const BASE = new Uint8Array(32).fill(0xba)

describe('Delta block header rules', () => {
  let dir: string
  let store: ChainStore
  let model: Uint8Array
  let layer0: Uint8Array
  let layer1: Uint8Array

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir)
    model = await addManifest(store, alice)
    layer0 = await addLayer(store, alice, model, 0)
    layer1 = await addLayer(store, alice, model, 1)
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('accepts a Delta by anyone on chain B, listing its manifest and the Layer block of its unit, every codec', async () => {
    for (const codec of ['f32', 'int8', 'sparse', 'lowrank']) {
      const payload = new Uint8Array(40).fill(codec.length)
      const id = await add(store, deltaHeader(bob, model, layer1, 1, BASE, { codec: str(codec) }, payload), bob, payload)
      expect((await store.get(id))?.header.chain).to.equal(ChainId.B)
    }
  })

  it('ERR_BLOCK_TYPE: a Delta block on chain A', async () => {
    await refused(store, { ...deltaHeader(bob, model, layer0, 0, BASE), chain: ChainId.A }, bob, 'ERR_BLOCK_TYPE', /belongs on chain 2/)
  })

  it('ERR_DELTA_BLOCK_FIELDS: every field missing or of the wrong kind, unit over u32, tensors 0, an extra field', async () => {
    for (const key of ['model', 'unit', 'base', 'codec', 'tensors']) {
      await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { [key]: undefined }), bob, 'ERR_DELTA_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
      const wrong = key === 'unit' || key === 'tensors' ? str('1') : uint(1)
      await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { [key]: wrong }), bob, 'ERR_DELTA_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
    }
    await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { base: bytes(BASE.subarray(0, 31)) }), bob, 'ERR_DELTA_BLOCK_FIELDS', /needs field 'base' \(bytes, 32 bytes\)/)
    await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { unit: uint(2n ** 32n) }), bob, 'ERR_DELTA_BLOCK_FIELDS', /needs field 'unit' \(uint32\)/)
    await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { tensors: uint(0) }), bob, 'ERR_DELTA_BLOCK_FIELDS', /'tensors' is at least 1/)
    await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { density: uint(1) }), bob, 'ERR_DELTA_BLOCK_FIELDS', /may not carry field 'density'/)
  })

  it('ERR_DELTA_BLOCK_CODEC: a codec outside f32, int8, sparse, lowrank', async () => {
    for (const codec of ['f16', 'INT8', '', 'zstd']) {
      await refused(store, deltaHeader(bob, model, layer0, 0, BASE, { codec: str(codec) }), bob, 'ERR_DELTA_BLOCK_CODEC', /f32, int8, sparse or lowrank/)
    }
  })

  it('ERR_DELTA_BLOCK_PAYLOAD: a Delta without a payload', async () => {
    await refused(store, deltaHeader(bob, model, layer0, 0, BASE, {}, new Uint8Array(0)), bob, 'ERR_DELTA_BLOCK_PAYLOAD', /needs a payload/)
  })

  it('ERR_DELTA_BLOCK_PARENT: not listing the manifest, or no Layer parent', async () => {
    await refused(store, { ...deltaHeader(bob, model, layer0, 0, BASE), parents: [layer0] }, bob, 'ERR_DELTA_BLOCK_PARENT', /must list its model manifest/)
    await refused(store, { ...deltaHeader(bob, model, layer0, 0, BASE), parents: [model] }, bob, 'ERR_DELTA_BLOCK_PARENT', /Layer block of its unit/)
  })

  it('ERR_DELTA_BLOCK_PARENT: the Layer parent is of another unit or another model; the model parent is not a ModelManifest', async () => {
    await refused(store, deltaHeader(bob, model, layer0, 1, BASE), bob, 'ERR_DELTA_BLOCK_PARENT', /Layer block of its model and unit/)
    const other = await addManifest(store, bob, 1n)
    const otherLayer = await addLayer(store, bob, other, 0)
    await refused(store, deltaHeader(bob, model, otherLayer, 0, BASE), bob, 'ERR_DELTA_BLOCK_PARENT', /Layer block of its model and unit/)
    const note = await add(store, header({ author: bob.publicKey, type: BlockType.Note }), bob)
    await refused(store, deltaHeader(bob, note, layer0, 0, BASE), bob, 'ERR_DELTA_BLOCK_PARENT', /is not a ModelManifest block/)
  })

  it('ERR_DELTA_BLOCK_PARENT: also for an orphan whose Layer parent arrives later and is of another unit', async () => {
    const late = await signHeader(layerHeader(alice, model, 5), alice)
    const orphan = await signHeader(deltaHeader(bob, model, late.id, 4, BASE), bob)
    expect(await store.addBlock(orphan.encoded, DELTA_PAYLOAD)).to.equal('orphaned')
    expect(await store.addBlock(late.encoded)).to.equal('added')
    expect(await store.has(orphan.id)).to.equal(false)
    expect(store.metrics().rejected.ERR_DELTA_BLOCK_PARENT).to.equal(1)
  })
})
