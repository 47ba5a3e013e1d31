/**
 * Header rules of the Attestation block (type 5, chain A): fields (verdict,
 * reason, seedSig), payload, its proposal among its parents (a Proposal of
 * its model), and the seed signature. One test per rule, through a real
 * chain store.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { MAX_ATTESTATION_BYTES, encodeAttestationPayload } from '../../src/protocols/attestation.ts'
import { openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import { DELTA_PAYLOAD, add, addLayer, addManifest, addTextDataset, attestationFields, bytes, deltaHeader, learningHeader, proposalFields, refused, seedSig, str, uint } from './learning-helpers.ts'
import type { Fields } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner } from '../../src/chain/types.ts'

const alice = signer(1)
const bob = signer(2)
const val = signer(4)
const BASE = new Uint8Array(32).fill(0xba)
const GOV = new Uint8Array(32).fill(0x60)
const PAYLOAD = encodeAttestationPayload([{ datasetId: new Uint8Array(32).fill(7), windows: [3, 1], base: [2_000_000n, 2_100_000n], cand: [1_900_000n, 2_000_000n] }])

describe('Attestation block header rules', () => {
  let dir: string
  let store: ChainStore
  let model: Uint8Array
  let proposal: Uint8Array
  let dataset: Uint8Array

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir)
    model = await addManifest(store, alice)
    const layer = await addLayer(store, alice, model, 0)
    dataset = await addTextDataset(store, bob)
    const delta = await add(store, deltaHeader(bob, model, layer, 0, BASE), bob, DELTA_PAYLOAD)
    proposal = await add(store, learningHeader(bob, BlockType.Proposal, proposalFields(model, BASE, GOV, dataset), [model, dataset, delta]), bob)
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  async function attestation (over: Fields = {}, verdict = 'accept', reason?: string, s: BlockSigner = val, parents = [proposal], payload = PAYLOAD): Promise<BlockHeader> {
    return learningHeader(s, BlockType.Attestation, attestationFields(model, proposal, await seedSig(s, proposal), verdict, reason, over), parents, payload)
  }

  it('accepts an accept (reason ok) and a reject (a reason code) by anyone, with a payload', async () => {
    await add(store, await attestation(), val, PAYLOAD)
    const empty = encodeAttestationPayload([])
    await add(store, await attestation({}, 'reject', 'stale', bob, [proposal], empty), bob, empty)
  })

  it('ERR_ATTESTATION_BLOCK_FIELDS: every field missing or of the wrong kind, an extra field', async () => {
    for (const key of ['model', 'proposal', 'verdict', 'reason', 'seedSig']) {
      await refused(store, await attestation({ [key]: undefined }), val, 'ERR_ATTESTATION_BLOCK_FIELDS', new RegExp(`needs field '${key}'`), PAYLOAD)
      const wrong = key === 'verdict' || key === 'reason' ? uint(1) : bytes(new Uint8Array(33))
      await refused(store, await attestation({ [key]: wrong }), val, 'ERR_ATTESTATION_BLOCK_FIELDS', new RegExp(`needs field '${key}'`), PAYLOAD)
    }
    await refused(store, await attestation({ gain: uint(1) }), val, 'ERR_ATTESTATION_BLOCK_FIELDS', /may not carry field 'gain'/, PAYLOAD)
  })

  it('ERR_ATTESTATION_BLOCK_FIELDS: a verdict other than accept/reject, a malformed reason, reason ok exactly for accept', async () => {
    await refused(store, await attestation({ verdict: str('maybe') }), val, 'ERR_ATTESTATION_BLOCK_FIELDS', /'accept' or 'reject'/, PAYLOAD)
    for (const reason of ['', 'Stale', 'has space', 'x'.repeat(33), '-stale']) {
      await refused(store, await attestation({}, 'reject', reason), val, 'ERR_ATTESTATION_BLOCK_FIELDS', /'reason' matches/, PAYLOAD)
    }
    await refused(store, await attestation({}, 'accept', 'stale'), val, 'ERR_ATTESTATION_BLOCK_FIELDS', /'ok' exactly when its verdict is 'accept'/, PAYLOAD)
    await refused(store, await attestation({}, 'reject', 'ok'), val, 'ERR_ATTESTATION_BLOCK_FIELDS', /'ok' exactly when its verdict is 'accept'/, PAYLOAD)
  })

  it('ERR_ATTESTATION_BLOCK_PAYLOAD: no payload, or one over MAX_ATTESTATION_BYTES', async () => {
    await refused(store, await attestation({}, 'accept', undefined, val, [proposal], new Uint8Array(0)), val, 'ERR_ATTESTATION_BLOCK_PAYLOAD', /needs a payload/)
    const h = await attestation()
    const size = MAX_ATTESTATION_BYTES + 1
    const big = { ...h, payloadSize: BigInt(size), chunkSize: 1024 * 1024, chunkHashes: Array.from({ length: Math.ceil(size / (1024 * 1024)) }, (_, i) => new Uint8Array(32).fill(i + 1)) }
    await refused(store, big, val, 'ERR_ATTESTATION_BLOCK_PAYLOAD', /exceeds the limit/)
  })

  it('ERR_ATTESTATION_BLOCK_PARENT: not listing its proposal; a proposal parent that is not a Proposal, or of another model', async () => {
    await refused(store, await attestation({}, 'accept', undefined, val, [dataset]), val, 'ERR_ATTESTATION_BLOCK_PARENT', /must list its proposal/, PAYLOAD)
    const onDataset = learningHeader(val, BlockType.Attestation, attestationFields(model, dataset, await seedSig(val, dataset)), [dataset], PAYLOAD)
    await refused(store, onDataset, val, 'ERR_ATTESTATION_BLOCK_PARENT', /is not a Proposal block/, PAYLOAD)
    const other = await addManifest(store, bob, 1n)
    await refused(store, await attestation({ model: bytes(other) }, 'accept', undefined, val, [proposal, other]), val, 'ERR_ATTESTATION_BLOCK_PARENT', /another model than its proposal/, PAYLOAD)
  })

  it('ERR_ATTESTATION_BLOCK_SEED: a seedSig by another key, over another proposal, or flipped', async () => {
    await refused(store, await attestation({ seedSig: bytes(await seedSig(bob, proposal)) }), val, 'ERR_ATTESTATION_BLOCK_SEED', /not its author's signature/, PAYLOAD)
    await refused(store, await attestation({ seedSig: bytes(await seedSig(val, dataset)) }), val, 'ERR_ATTESTATION_BLOCK_SEED', /not its author's signature/, PAYLOAD)
    const flipped = await seedSig(val, proposal)
    flipped[10] ^= 1
    await refused(store, await attestation({ seedSig: bytes(flipped) }), val, 'ERR_ATTESTATION_BLOCK_SEED', /not its author's signature/, PAYLOAD)
  })

  it('ERR_ATTESTATION_BLOCK_PARENT: also for an orphan whose parent turns out to be no Proposal', async () => {
    const note = await signHeader(learningHeader(bob, BlockType.Note, {}, []), bob)
    const h = learningHeader(val, BlockType.Attestation, attestationFields(model, note.id, await seedSig(val, note.id)), [note.id], PAYLOAD)
    const orphan = await signHeader(h, val)
    expect(await store.addBlock(orphan.encoded, PAYLOAD)).to.equal('orphaned')
    expect(await store.addBlock(note.encoded)).to.equal('added')
    expect(await store.has(orphan.id)).to.equal(false)
    expect(store.metrics().rejected.ERR_ATTESTATION_BLOCK_PARENT).to.equal(1)
  })
})
