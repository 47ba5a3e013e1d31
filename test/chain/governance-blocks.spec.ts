/**
 * Header rules of the governance blocks on chain A: Motion (type 6), Vote
 * (type 7) and Params (type 8): fields, payload sizes, the parents each
 * must list, and the Params author. One test per rule, through a real chain
 * store.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { encodeMotionPayload } from '../../src/protocols/motion.ts'
import { MAX_PARAMS_BYTES, encodeParams } from '../../src/protocols/params.ts'
import { header, openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import { add, addManifest, bytes, learningHeader, refused, str, uint } from './learning-helpers.ts'
import type { Fields } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner } from '../../src/chain/types.ts'

const alice = signer(1)
const bob = signer(2)
const G0 = new Uint8Array(32).fill(0x60)
const ADD_BOB = encodeMotionPayload({ kind: 'validators.add', key: bob.publicKey })
const SET = encodeMotionPayload({ kind: 'params.set', params: { minGainPpm: 1000 } })
const PARAMS = encodeParams({ quorumNum: 2, quorumDen: 3 })

describe('governance block header rules (Motion, Vote, Params)', () => {
  let dir: string
  let store: ChainStore
  let model: Uint8Array

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir)
    model = await addManifest(store, alice)
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  function motion (over: Fields = {}, payload = ADD_BOB, kind = 'validators.add', parents = [model], s: BlockSigner = alice): BlockHeader {
    return learningHeader(s, BlockType.Motion, { model: bytes(model), kind: str(kind), base: bytes(G0), ...over }, parents, payload)
  }

  function vote (m: Uint8Array, over: Fields = {}, parents = [m], s: BlockSigner = bob): BlockHeader {
    return learningHeader(s, BlockType.Vote, { model: bytes(model), motion: bytes(m), ...over }, parents)
  }

  function params (over: Fields = {}, payload = PARAMS, parents = [model], s: BlockSigner = alice): BlockHeader {
    return learningHeader(s, BlockType.Params, { model: bytes(model), ...over }, parents, payload)
  }

  describe('Motion', () => {
    it('accepts each kind by anyone (membership is the fold\'s business)', async () => {
      await add(store, motion(), alice, ADD_BOB)
      await add(store, motion({}, ADD_BOB, 'validators.remove', [model], bob), bob, ADD_BOB)
      await add(store, motion({}, SET, 'params.set'), alice, SET)
    })

    it('ERR_MOTION_BLOCK_FIELDS: every field missing or of the wrong kind, an unknown kind, an extra field', async () => {
      for (const key of ['model', 'kind', 'base']) {
        await refused(store, motion({ [key]: undefined }), alice, 'ERR_MOTION_BLOCK_FIELDS', new RegExp(`needs field '${key}'`), ADD_BOB)
        await refused(store, motion({ [key]: key === 'kind' ? uint(1) : str('x') }), alice, 'ERR_MOTION_BLOCK_FIELDS', new RegExp(`needs field '${key}'`), ADD_BOB)
      }
      await refused(store, motion({ kind: str('validators.replace') }), alice, 'ERR_MOTION_BLOCK_FIELDS', /validators.add, validators.remove, params.set/, ADD_BOB)
      await refused(store, motion({ key: bytes(bob.publicKey) }), alice, 'ERR_MOTION_BLOCK_FIELDS', /may not carry field 'key'/, ADD_BOB)
    })

    it('ERR_MOTION_BLOCK_PAYLOAD: a validators motion whose payload is not 32 bytes; a params.set with none or over MAX_PARAMS_BYTES', async () => {
      const short = ADD_BOB.subarray(0, 31)
      await refused(store, motion({}, short), alice, 'ERR_MOTION_BLOCK_PAYLOAD', /is the 32-byte key \(got 31 bytes\)/, short)
      await refused(store, motion({}, new Uint8Array(0), 'validators.remove'), alice, 'ERR_MOTION_BLOCK_PAYLOAD', /is the 32-byte key \(got 0 bytes\)/)
      await refused(store, motion({}, new Uint8Array(0), 'params.set'), alice, 'ERR_MOTION_BLOCK_PAYLOAD', /needs a payload/)
      const big = new Uint8Array(MAX_PARAMS_BYTES + 1)
      await refused(store, motion({}, big, 'params.set'), alice, 'ERR_MOTION_BLOCK_PAYLOAD', /exceeds the limit/, big)
    })

    it('ERR_MOTION_BLOCK_PARENT: not listing its manifest, or a model that is not a ModelManifest', async () => {
      await refused(store, motion({}, ADD_BOB, 'validators.add', []), alice, 'ERR_MOTION_BLOCK_PARENT', /must list its model manifest/, ADD_BOB)
      const note = await add(store, header({ author: alice.publicKey }), alice)
      await refused(store, motion({ model: bytes(note) }, ADD_BOB, 'validators.add', [note]), alice, 'ERR_MOTION_BLOCK_PARENT', /is not a ModelManifest block/, ADD_BOB)
    })
  })

  describe('Vote', () => {
    it('accepts a vote listing its motion', async () => {
      const m = await add(store, motion(), alice, ADD_BOB)
      await add(store, vote(m), bob)
    })

    it('ERR_VOTE_BLOCK_FIELDS: every field missing or of the wrong kind, an extra field', async () => {
      const m = await add(store, motion(), alice, ADD_BOB)
      for (const key of ['model', 'motion']) {
        await refused(store, vote(m, { [key]: undefined }), bob, 'ERR_VOTE_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
        await refused(store, vote(m, { [key]: uint(1) }), bob, 'ERR_VOTE_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
      }
      await refused(store, vote(m, { verdict: str('yes') }), bob, 'ERR_VOTE_BLOCK_FIELDS', /may not carry field 'verdict'/)
    })

    it('ERR_VOTE_BLOCK_PAYLOAD: a vote with a payload', async () => {
      const m = await add(store, motion(), alice, ADD_BOB)
      const payload = new Uint8Array(4)
      await refused(store, learningHeader(bob, BlockType.Vote, { model: bytes(model), motion: bytes(m) }, [m], payload), bob, 'ERR_VOTE_BLOCK_PAYLOAD', /carries no payload/, payload)
    })

    it('ERR_VOTE_BLOCK_PARENT: not listing its motion; a motion parent that is not a Motion, or of another model', async () => {
      const m = await add(store, motion(), alice, ADD_BOB)
      await refused(store, vote(m, {}, [model]), bob, 'ERR_VOTE_BLOCK_PARENT', /must list its motion/)
      await refused(store, vote(model, {}, [model]), bob, 'ERR_VOTE_BLOCK_PARENT', /is not a Motion block/)
      const other = await addManifest(store, bob, 1n)
      const foreign = await add(store, learningHeader(bob, BlockType.Motion, { model: bytes(other), kind: str('validators.add'), base: bytes(G0) }, [other], ADD_BOB), bob, ADD_BOB)
      await refused(store, vote(foreign), bob, 'ERR_VOTE_BLOCK_PARENT', /another model than its motion/)
    })

    it('ERR_VOTE_BLOCK_PARENT: also for an orphan whose motion arrives later and is of another model', async () => {
      const other = await addManifest(store, bob, 1n)
      const late = await signHeader(learningHeader(bob, BlockType.Motion, { model: bytes(other), kind: str('validators.add'), base: bytes(G0) }, [other], ADD_BOB), bob)
      const orphan = await signHeader(vote(late.id), bob)
      expect(await store.addBlock(orphan.encoded)).to.equal('orphaned')
      expect(await store.addBlock(late.encoded, ADD_BOB)).to.equal('added')
      expect(await store.has(orphan.id)).to.equal(false)
      expect(store.metrics().rejected.ERR_VOTE_BLOCK_PARENT).to.equal(1)
    })
  })

  describe('Params', () => {
    it('accepts the manifest author\'s Params block', async () => {
      await add(store, params(), alice, PARAMS)
    })

    it('ERR_PARAMS_BLOCK_FIELDS: the model missing or of the wrong kind, an extra field', async () => {
      await refused(store, params({ model: undefined }), alice, 'ERR_PARAMS_BLOCK_FIELDS', /needs field 'model'/, PARAMS)
      await refused(store, params({ model: str('m') }), alice, 'ERR_PARAMS_BLOCK_FIELDS', /needs field 'model'/, PARAMS)
      await refused(store, params({ quorumNum: uint(2) }), alice, 'ERR_PARAMS_BLOCK_FIELDS', /may not carry field 'quorumNum'/, PARAMS)
    })

    it('ERR_PARAMS_BLOCK_PAYLOAD: no payload, or one over MAX_PARAMS_BYTES', async () => {
      await refused(store, params({}, new Uint8Array(0)), alice, 'ERR_PARAMS_BLOCK_PAYLOAD', /needs a payload/)
      const big = new Uint8Array(MAX_PARAMS_BYTES + 1)
      await refused(store, params({}, big), alice, 'ERR_PARAMS_BLOCK_PAYLOAD', /exceeds the limit/, big)
    })

    it('ERR_PARAMS_BLOCK_PARENT: not listing its manifest, or a model that is not a ModelManifest', async () => {
      await refused(store, params({}, PARAMS, []), alice, 'ERR_PARAMS_BLOCK_PARENT', /must list its model manifest/, PARAMS)
      const note = await add(store, header({ author: alice.publicKey }), alice)
      await refused(store, params({ model: bytes(note) }, PARAMS, [note]), alice, 'ERR_PARAMS_BLOCK_PARENT', /is not a ModelManifest block/, PARAMS)
    })

    it('ERR_PARAMS_BLOCK_AUTHOR: a Params block by anyone but the manifest\'s author', async () => {
      await refused(store, params({}, PARAMS, [model], bob), bob, 'ERR_PARAMS_BLOCK_AUTHOR', /only the manifest's author/, PARAMS)
    })
  })
})
