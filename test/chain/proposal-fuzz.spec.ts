/**
 * Fuzz of Proposal headers: 10000 mutants of a valid proposal (fields
 * dropped, retyped, re-valued, added; parents dropped, swapped for other
 * blocks' ids or unknown ids; a payload; another type or chain), each
 * signed by the proposer and offered to a real chain store. None crashes
 * it: each is refused with a typed ChainError code, parked as an orphan,
 * or stored; every stored Proposal satisfies every header rule (its Delta
 * parents are its author's own, of its model and base, one per unit, and it
 * lists its manifest and a Dataset). The fold of the model afterwards
 * accepts none of them (no attestation).
 */
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { foldModel } from '../../src/learning/fold/fold.ts'
import { encodeParams } from '../../src/protocols/params.ts'
import { Mutator } from '../protocols/mutate.ts'
import { header, openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import { DELTA_PAYLOAD, add, addLayer, addManifest, addTextDataset, bytes, deltaHeader, learningHeader, proposalFields, str, uint } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, FieldValue } from '../../src/chain/types.ts'

const alice = signer(1)
const bob = signer(2)
const carol = signer(3)
const BASE = new Uint8Array(32).fill(0xba)
const GOV = new Uint8Array(32).fill(0x60)
const KEYS = ['model', 'base', 'governance', 'dataset', 'claimedBase', 'claimedAfter']

describe('Proposal header fuzz', function () {
  this.timeout(300_000)
  let dir: string
  let store: ChainStore

  before(async () => {
    dir = await tempDir('bly-proposal-fuzz-')
    store = await openStore(dir)
  })

  after(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('10000 mutated proposals: typed refusals or rule-abiding blocks, and the fold accepts none', async () => {
    const model = await addManifest(store, alice)
    const payload = encodeParams({ quorumNum: 2 })
    await add(store, learningHeader(alice, BlockType.Params, { model: bytes(model) }, [model], payload), alice, payload)
    const other = await addManifest(store, carol, 1n)
    const layers = [0, 1, 2].map(async unit => addLayer(store, alice, model, unit))
    const [l0, l1, l2] = await Promise.all(layers)
    const otherLayer = await addLayer(store, carol, other, 0)
    const dataset = await addTextDataset(store, carol)
    const note = await add(store, header({ author: bob.publicKey }), bob)
    const own = [await add(store, deltaHeader(bob, model, l0, 0, BASE), bob, DELTA_PAYLOAD), await add(store, deltaHeader(bob, model, l1, 1, BASE), bob, DELTA_PAYLOAD)]
    const sameUnit = await add(store, deltaHeader(bob, model, l0, 0, BASE, { codec: str('f32') }), bob, DELTA_PAYLOAD)
    const foreign = await add(store, deltaHeader(carol, model, l2, 2, BASE), carol, DELTA_PAYLOAD)
    const staleDelta = await add(store, deltaHeader(bob, model, l2, 2, new Uint8Array(32).fill(1)), bob, DELTA_PAYLOAD)
    const otherModel = await add(store, learningHeader(bob, BlockType.Delta, { model: bytes(other), unit: uint(0), base: bytes(BASE), codec: str('int8'), tensors: uint(1) }, [other, otherLayer], DELTA_PAYLOAD), bob, DELTA_PAYLOAD)
    const known = [model, other, l0, l1, l2, dataset, note, ...own, sameUnit, foreign, staleDelta, otherModel]
    const valid = learningHeader(bob, BlockType.Proposal, proposalFields(model, BASE, GOV, dataset), [model, dataset, ...own])
    const r = new Mutator(77)
    const pick = <T> (items: T[]): T => items[r.below(items.length)]
    const randomId = (): Uint8Array => Uint8Array.from({ length: 32 }, () => r.below(256))
    const randomValue = (): FieldValue => {
      switch (r.below(5)) {
        case 0: return bytes(pick(known))
        case 1: return bytes(randomId().subarray(0, r.below(40)))
        case 2: return uint(BigInt(r.next()) * BigInt(r.next()))
        case 3: return str(['', 'x', 'ok'][r.below(3)])
        default: return { kind: 'int', value: -BigInt(r.below(10)) }
      }
    }
    const mutate = (): BlockHeader => {
      const fields = new Map(valid.fields)
      let parents = [...valid.parents]
      const h: BlockHeader = { ...valid, timestamp: valid.timestamp + BigInt(r.below(1_000_000)) }
      for (let k = 1 + r.below(3); k > 0; k--) {
        switch (r.below(9)) {
          case 0: fields.delete(pick(KEYS)); break
          case 1: fields.set(pick(KEYS), randomValue()); break
          case 2: fields.set(pick(['note', 'density', 'z']), randomValue()); break
          case 3: {
            const drop = r.below(parents.length)
            parents = parents.filter((_, i) => i !== drop)
            break
          }
          case 4: parents.push(pick(known)); break
          case 5: parents.push(randomId()); break
          case 6: parents = [pick(known), pick(known)]; break
          case 7: h.type = pick([BlockType.Proposal, BlockType.Attestation, BlockType.Vote, BlockType.Delta, 9 as BlockType]); break
          default: h.chain = pick([ChainId.A, ChainId.B])
        }
      }
      return { ...h, fields, parents: [...new Map(parents.map(p => [Buffer.from(p).toString('hex'), p])).values()] }
    }
    const outcomes = new Map<string, number>()
    const count = (key: string): void => { outcomes.set(key, (outcomes.get(key) ?? 0) + 1) }
    for (let i = 0; i < 10000; i++) {
      const h = mutate()
      const { encoded } = await signHeader(h, bob)
      try {
        count(await store.addBlock(encoded))
      } catch (err: any) {
        expect(err?.code, String(err?.stack ?? err)).to.match(/^ERR_[A-Z_]+$/)
        count(err.code)
      }
    }
    // every stored Proposal of the model abides by the header rules
    let proposals = 0
    for await (const p of store.byType(BlockType.Proposal)) {
      proposals++
      const f = p.header.fields
      const m = f.get('model')?.value as Uint8Array
      expect(p.header.parents.some(x => Buffer.compare(x, m) === 0)).to.equal(true)
      expect((await store.get(f.get('dataset')?.value as Uint8Array))?.header.type).to.equal(BlockType.Dataset)
      const units = new Set<bigint>()
      let deltas = 0
      for (const parent of p.header.parents) {
        const d = await store.get(parent)
        if (d?.header.type !== BlockType.Delta) {
          continue
        }
        deltas++
        expect(Buffer.compare(d.header.author, p.header.author)).to.equal(0)
        expect(Buffer.compare(d.header.fields.get('model')?.value as Uint8Array, m)).to.equal(0)
        expect(Buffer.compare(d.header.fields.get('base')?.value as Uint8Array, f.get('base')?.value as Uint8Array)).to.equal(0)
        units.add(d.header.fields.get('unit')?.value as bigint)
      }
      expect(deltas).to.be.greaterThan(0)
      expect(units.size).to.equal(deltas)
    }
    expect(proposals).to.be.greaterThan(0)
    expect(outcomes.get('ERR_PROPOSAL_BLOCK_FIELDS')).to.be.greaterThan(100)
    expect(outcomes.get('ERR_PROPOSAL_BLOCK_DELTA_AUTHOR')).to.be.greaterThan(10)
    const fold = await foldModel(store, model, { evalWindows: async () => new Uint32Array(0) })
    expect(fold.proposals.length).to.be.greaterThan(0)
    expect(fold.proposals.every(p => p.status !== 'accepted')).to.equal(true)
    expect(fold.live.index).to.equal(0)
  })
})
