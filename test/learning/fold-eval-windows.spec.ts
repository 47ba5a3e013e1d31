/**
 * The fold with the real eval-window reader (EvalWindowsCache) on a real
 * imported model (the tiny fixture) and a real ids dataset: the windows are
 * the dataset's own split, reads are cached and shared, failures are not
 * cached, the cache is bounded; and an attestation sampled from those
 * windows is counted and accepts the proposal.
 */
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { addDataset, findDataset, loadDatasetWindows } from '../../src/learning/dataset-store.ts'
import { EvalWindowsCache } from '../../src/learning/fold/eval-windows.ts'
import { foldModel } from '../../src/learning/fold/fold.ts'
import { initialGovernanceId, initialVersionId, nextGovernanceId, nextVersionId } from '../../src/learning/fold/ids.ts'
import { attestationBlock, deltaBlock, motionBlock, paramsBlock, proposalBlock, voteBlock } from '../../src/learning/new-blocks.ts'
import { defaultParams } from '../../src/learning/params-defaults.ts'
import { sampleFor, signSeed } from '../../src/learning/pol/seed.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { DELTA_PAYLOAD, fieldMap } from '../chain/learning-helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { hexOf } from './fold-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'

const importer = signer(1)
const proposer = signer(10)
const enc = new TextEncoder()

function corpus (count: number): string {
  let x = 7
  const next = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x >>> 8 }
  return Array.from({ length: count }, () => JSON.stringify({ ids: Array.from({ length: 40 + next() % 200 }, () => next() % 512) })).join('\n') + '\n'
}

describe('learning/fold: eval windows from stored datasets', function () {
  this.timeout(120_000)
  let dir: string
  let store: ChainStore
  let model: Uint8Array
  let dataset: Uint8Array

  before(async () => {
    dir = await tempDir('bly-fold-win-')
    store = await openStore(`${dir}/chain`)
    model = Uint8Array.from(Buffer.from((await importModel({ store, signer: importer, dir: fixtureDir('untied-f32') })).modelId, 'hex'))
    const json = await addDataset({ store, signer: proposer, bytes: enc.encode(corpus(300)), name: 'tiny-train', format: 'ids', model: hexOf(model), splitTokens: 16 })
    dataset = Uint8Array.from(Buffer.from(json.id, 'hex'))
  })

  after(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('gives the dataset\'s own eval windows, reads each dataset once, caches no failure, stays within maxEntries', async () => {
    const cache = new EvalWindowsCache({ store, maxEntries: 1 })
    const expected = (await loadDatasetWindows(store, await findDataset(store, 'tiny-train'))).split.evalWindows
    expect(expected.length).to.be.greaterThan(64)
    const [a, b] = await Promise.all([cache.get(dataset, model), cache.provider(model)(dataset)])
    expect(a).to.deep.equal(expected)
    expect(b).to.equal(a) // one read, shared
    expect(cache.size).to.equal(1)
    // a text dataset read with a model that has no tokenizer fails, and the failure is not kept
    const text = await store.createBlock({
      chain: ChainId.A,
      type: BlockType.Dataset,
      fields: fieldMap({ name: { kind: 'string', value: 'words' }, format: { kind: 'string', value: 'text' }, sequences: { kind: 'uint', value: 1n }, tokens: { kind: 'uint', value: 0n }, bytes: { kind: 'uint', value: 5n }, evalPermille: { kind: 'uint', value: 100n }, splitTokens: { kind: 'uint', value: 128n } }),
      payload: enc.encode('words')
    }, proposer)
    let failed = false
    try {
      await cache.get(text.id, model)
    } catch (err: any) {
      failed = true
      expect(err.code).to.be.a('string')
    }
    expect(failed).to.equal(true)
    await new Promise(resolve => setImmediate(resolve))
    expect(cache.size).to.equal(0)
    // the bound evicted the ids entry when the text one came in; reading it again works
    expect(await cache.get(dataset, model)).to.deep.equal(expected)
    expect(cache.size).to.equal(1)
  })

  it('an attestation sampled from the stored dataset\'s windows is counted and accepts the proposal; blocks built with new-blocks.ts', async () => {
    await store.createBlock(paramsBlock(model, defaultParams()), importer)
    const v0 = initialVersionId(model)
    const g0 = initialGovernanceId(model)
    const [layer] = await store.byModelUnit(model, 1)
    const delta = await store.createBlock(deltaBlock({ model, layer: layer.id, unit: 1, base: v0, codec: 'sparse', tensors: 3, payload: DELTA_PAYLOAD }), proposer)
    const proposal = await store.createBlock(proposalBlock({ model, base: v0, governance: g0, dataset, deltas: [delta.id], claimedBase: 3_000_000n, claimedAfter: 2_900_000n }), proposer)
    const seedSig = await signSeed(importer, proposal.id)
    const cache = new EvalWindowsCache({ store })
    const windows = sampleFor(seedSig, await cache.get(dataset, model), 64)
    const base = windows.map((_, i) => 3_000_000n + BigInt(i * 997 % 5000))
    await store.createBlock(attestationBlock({ model, proposal: proposal.id, seedSig, reason: 'ok', measurements: [{ datasetId: dataset, windows, base, cand: base.map(b => b - b / 40n) }] }), importer)
    let f = await foldModel(store, model, { evalWindows: cache.provider(model) })
    const shown = f.proposals.find(p => p.id === hexOf(proposal.id))
    expect(shown).to.include({ status: 'accepted', accepts: 1, quorum: 1, validators: 1, claimedBase: '3000000' })
    expect(shown?.gain).to.be.closeTo(0.025, 0.0001)
    expect(f.live.id).to.equal(hexOf(nextVersionId(v0, proposal.id)))
    expect(f.live.units).to.deep.equal([{ unit: 1, deltas: [hexOf(delta.id)] }])
    // governance with the builders: the importer adds the proposer, then both must sign (2 of 2)
    const m1 = await store.createBlock(motionBlock(model, g0, { kind: 'validators.add', key: proposer.publicKey }), importer)
    const g1 = nextGovernanceId(g0, m1.id)
    const m2 = await store.createBlock(motionBlock(model, g1, { kind: 'params.set', params: { sampleWindows: 32 } }), proposer)
    f = await foldModel(store, model, { evalWindows: cache.provider(model) })
    expect(f.governance.current.id).to.equal(hexOf(g1))
    await store.createBlock(voteBlock(model, m2.id), importer)
    f = await foldModel(store, model, { evalWindows: cache.provider(model) })
    expect(f.governance.current).to.include({ id: hexOf(nextGovernanceId(g1, m2.id)), quorum: 2 })
    expect(f.governance.current.params?.sampleWindows).to.equal(32)
  })
})
