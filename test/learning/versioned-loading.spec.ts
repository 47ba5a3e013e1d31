/**
 * Versioned loading: two proposals accepted one after the other (real
 * blocks, measured attestations: accept-helpers.ts) give V0 -> V1 -> V2;
 * the chain loader and the inference service (with the learning part's
 * ModelVersions injected) load the live version, `version` pins an earlier
 * one, and `show` reports the version, its accepted deltas and its weights
 * hash, all checked against weights built by applying the deltas by hand.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { toF32Tensors, toRawTensors } from '../../src/learning/f32-tensors.ts'
import { createChainModelVersions } from '../../src/learning/model-versions.ts'
import { weightsHash } from '../../src/learning/weights-hash.ts'
import { loadModelManifest, loadUnitTensors } from '../../src/model/chain-loader.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { InferenceService } from '../../src/model/inference-service.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { tf } from '../../src/model/qwen3/tf.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { expectCode, openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { loadFixture } from '../model/fixtures.ts'
import { acceptCheckpoint, addIdsDataset, candidateUnits, foldOf, perturbedTarget, sampleSequences } from './accept-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { VersionInfo } from '../../src/learning/fold/types.ts'
import type { ModelManifest } from '../../src/model/chain-loader.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

const IDS = [3, 17, 250, 9, 101, 44, 7]

/** logits of IDS through a whole model built from per-unit f32 tensors */
async function logitsOf (manifest: ModelManifest, units: F32Tensors[]): Promise<number[][]> {
  const all = new Map<string, RawTensor>()
  for (const u of units) {
    for (const [name, t] of toRawTensors(u)) {
      all.set(name, t)
    }
  }
  const c = manifest.qwen3
  const range = await LayerRange.load(c, new MapWeightSource(all), { start: 0, end: c.numLayers, embedding: true, head: true })
  const session = range.createSession()
  try {
    const t = await range.forwardTokensAsync(session, IDS)
    const rows = await t.array()
    t.dispose()
    return rows
  } finally {
    session.dispose()
    range.dispose()
  }
}

describe('learning: versioned loading', function () {
  this.timeout(300_000)
  let dir: string
  let store: ChainStore
  let manifest: ModelManifest
  const importer = signer(1)
  const proposer = signer(2)
  let v1: VersionInfo
  let v2: VersionInfo
  /** per-unit weights of each version, applied by hand */
  const byHand: Record<string, F32Tensors[]> = {}

  before(async () => {
    await tf.setBackend('cpu')
    dir = await tempDir('blyd-versioned-')
    store = await openStore(join(dir, 'chain'))
    const fixture = await loadFixture('untied-f32')
    const { modelId } = await importModel({ store, signer: importer, dir: fixture.dir })
    manifest = await loadModelManifest(store, Uint8Array.from(Buffer.from(modelId, 'hex')))
    const split = { splitTokens: 32, evalPermille: 500 }
    // V1: the fixture + noise, judged on text sampled from it; V2: V1's target + more noise, on its own text
    const t1 = perturbedTarget(fixture.tensors, { scale: 0.5, seed: 1, headScale: 3 })
    const d1 = await addIdsDataset(store, importer, manifest, 'target-1', await sampleSequences(fixture.config, t1, 24, 64, 7), split)
    v1 = (await acceptCheckpoint(store, proposer, importer, manifest, t1, d1)).version
    const t2 = perturbedTarget(t1, { scale: 0.5, seed: 2 })
    const d2 = await addIdsDataset(store, importer, manifest, 'target-2', await sampleSequences(fixture.config, t2, 24, 64, 8), split)
    v2 = (await acceptCheckpoint(store, proposer, importer, manifest, t2, d2)).version

    const fold = await foldOf(store, manifest)
    byHand[fold.versions[0].id] = await Promise.all(manifest.units.map(async u => toF32Tensors(await loadUnitTensors(store, manifest, u.unit))))
    byHand[v1.id] = await candidateUnits(store, manifest, fold.versions[0], fold.proposals.find(p => p.id === v1.proposal) as any)
    byHand[v2.id] = await candidateUnits(store, manifest, v1, fold.proposals.find(p => p.id === v2.proposal) as any)
  })

  after(async () => {
    await store?.stop()
    await removeDir(dir)
  })

  it('resolves the live version, any version of the history by prefix, and refuses an unknown one', async () => {
    const versions = createChainModelVersions({ store: () => store })
    const fold = await foldOf(store, manifest)
    expect(fold.versions.map(v => v.id)).to.deep.equal([fold.versions[0].id, v1.id, v2.id])
    expect((await versions.resolve(manifest)).id).to.equal(v2.id)
    const old = await versions.resolve(manifest, v1.id.slice(0, 12).toUpperCase())
    expect(old.id).to.equal(v1.id)
    expect(old.index).to.equal(1)
    expect(old.acceptedDeltas).to.deep.equal(v1.acceptedDeltas)
    expect(old.changedUnits).to.deep.equal(manifest.units.map(u => u.unit))
    await expectCode(versions.resolve(manifest, 'deadbeefdeadbeef'), ModelErrorCode.VERSION_NOT_FOUND)
    await expectCode(versions.resolve(manifest, 'abc'), ModelErrorCode.VERSION_NOT_FOUND)
  })

  it('logits and generate use the live version; version pins an earlier one; each equals the hand-applied weights', async () => {
    const versions = createChainModelVersions({ store: () => store })
    const service = new InferenceService({ store: () => store, backend: 'cpu', workers: 0, maxLoadedModels: 3, versions })
    await service.start()
    try {
      const live = await service.logitsResult(manifest.idHex, IDS)
      expect(live.version).to.equal(v2.id)
      expect(live.logits).to.deep.equal(await logitsOf(manifest, byHand[v2.id]))
      const pinned = await service.logitsResult(manifest.idHex, IDS, undefined, v1.id.slice(0, 10))
      expect(pinned.version).to.equal(v1.id)
      expect(pinned.logits).to.deep.equal(await logitsOf(manifest, byHand[v1.id]))
      const v0 = (await foldOf(store, manifest)).versions[0].id
      const base = await service.logitsResult(manifest.idHex, IDS, undefined, v0)
      expect(base.logits).to.deep.equal(await logitsOf(manifest, byHand[v0]))
      // three different weights, three different results
      expect(live.logits).to.not.deep.equal(pinned.logits)
      expect(pinned.logits).to.not.deep.equal(base.logits)
      // each version is loaded once and kept like a model of its own
      expect(service.workersStatus().loaded.map(l => l.model)).to.deep.equal([manifest.idHex, manifest.idHex, manifest.idHex])

      const greedy = async (version?: string): Promise<number[]> => (await service.generate({ model: manifest.idHex, promptIds: [5, 6, 7], maxNewTokens: 12, ...(version != null ? { version } : {}) })).tokens
      const liveTokens = await service.generate({ model: manifest.idHex, promptIds: [5, 6, 7], maxNewTokens: 12 })
      expect(liveTokens.version).to.equal(v2.id)
      expect(await greedy(v2.id)).to.deep.equal(liveTokens.tokens)
      expect(await greedy(v0)).to.not.deep.equal(liveTokens.tokens)
      await expectCode(service.logitsResult(manifest.idHex, IDS, undefined, 'deadbeefdeadbeef'), ModelErrorCode.VERSION_NOT_FOUND)
    } finally {
      await service.stop()
    }
  })

  it('show gives the version, its accepted deltas in order and its weights hash (hand-applied weights hashed alike)', async () => {
    const service = new InferenceService({ store: () => store, versions: createChainModelVersions({ store: () => store }) })
    const fold = await foldOf(store, manifest)
    const hashOf = (units: F32Tensors[]): string => Buffer.from(weightsHash(units.map((tensors, unit) => ({ unit, tensors })))).toString('hex')
    const live = await service.show(manifest.idHex)
    expect(live.version).to.equal(v2.id)
    expect(live.liveVersion).to.equal(v2.id)
    expect(live.versionIndex).to.equal(2)
    expect(live.acceptedDeltas).to.deep.equal(v2.acceptedDeltas)
    expect(live.acceptedDeltas?.map(d => d.proposal)).to.deep.equal([...v1.acceptedDeltas.map(() => v1.proposal), ...v2.acceptedDeltas.slice(v1.acceptedDeltas.length).map(() => v2.proposal)])
    expect(live.weightsHash).to.equal(hashOf(byHand[v2.id]))
    const v0 = fold.versions[0].id
    const first = await service.show(manifest.idHex, v0.slice(0, 8))
    expect(first.version).to.equal(v0)
    expect(first.liveVersion).to.equal(v2.id)
    expect(first.acceptedDeltas).to.deep.equal([])
    expect(first.weightsHash).to.equal(hashOf(byHand[v0]))
    expect((await service.list()).map(m => m.version)).to.deep.equal([v2.id])
    // a service that reads no versions: the imported weights, no version fields, and a version asked for is an error
    const plain = new InferenceService({ store: () => store })
    expect((await plain.show(manifest.idHex)).version).to.equal(undefined)
    await expectCode(plain.show(manifest.idHex, v0), ModelErrorCode.VERSION_NOT_FOUND)
  })
})
