/**
 * Versioned loading: two proposals accepted one after the other (the real
 * path, in-process: `delta propose` of a checkpoint that truly lowers the
 * loss, the importer validating it with validator.ts; helpers-pol.ts) give
 * V0 -> V1 -> V2; the chain loader and the inference service (with the
 * learning part's ModelVersions injected) load the live version, `version`
 * pins an earlier one, and `show` reports the version, its accepted deltas
 * and its weights hash, all checked against weights built by applying each
 * accepted delta by hand.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { applyDeltaInPlace } from '../../src/learning/delta-apply.ts'
import { proposeCheckpoint } from '../../src/learning/delta-propose.ts'
import { toF32Tensors, toRawTensors } from '../../src/learning/f32-tensors.ts'
import { createChainModelVersions } from '../../src/learning/model-versions.ts'
import { readDelta } from '../../src/learning/version-weights.ts'
import { weightsHash } from '../../src/learning/weights-hash.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { loadUnitTensors } from '../../src/model/chain-loader.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { InferenceService } from '../../src/model/inference-service.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { expectCode, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { addIdsDataset, foldWorld, polWorld, realisticDeltas, runValidator, sampleSequences, shifted, tinyModel, writeCheckpoint } from './helpers-pol.ts'
import type { PolWorld } from './helpers-pol.ts'
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

/** Every unit of `version` built by hand: the Layer block's tensors upcast, then each accepted delta of the unit applied in the version's order. */
async function byHandUnits (w: PolWorld, version: VersionInfo): Promise<F32Tensors[]> {
  const out: F32Tensors[] = []
  for (const u of w.manifest.units) {
    const tensors = toF32Tensors(await loadUnitTensors(w.store, w.manifest, u.unit))
    for (const d of version.acceptedDeltas.filter(d => d.unit === u.unit)) {
      applyDeltaInPlace(tensors, (await readDelta(w.store, d.delta)).delta)
    }
    out.push(tensors)
  }
  return out
}

describe('learning: versioned loading', function () {
  this.timeout(300_000)
  let dir: string
  let w: PolWorld
  let store: PolWorld['store']
  let manifest: ModelManifest
  const importer = signer(1)
  const proposer = signer(2)
  let v1: VersionInfo
  let v2: VersionInfo
  /** per-unit weights of each version, applied by hand */
  const byHand: Record<string, F32Tensors[]> = {}

  before(async () => {
    await selectBackend('cpu')
    dir = await tempDir('blyd-versioned-')
    w = await polWorld(join(dir, 'chain'), importer)
    store = w.store
    manifest = w.manifest
    const split = { splitTokens: 32, evalPermille: 500 }
    // V1: the fixture + a realistic delta, judged on text sampled from it; V2: V1's target + another, on its own text
    const { config, tensors } = await tinyModel()
    const accept = async (name: string, target: Map<string, RawTensor>, seed: number): Promise<VersionInfo> => {
      await addIdsDataset(w, name, await sampleSequences(config, target, 40, 32, seed), split)
      const r = await proposeCheckpoint({ store, signer: proposer, checkpoint: await writeCheckpoint(join(dir, name), target), dataset: name, evalWindows: w.evalWindows })
      const [a] = await runValidator(w, importer)
      expect(a.outcome.reason, `proposal ${r.proposalId}`).to.equal('ok')
      const fold = await foldWorld(w)
      expect(fold.live.proposal).to.equal(r.proposalId)
      return fold.live
    }
    const t1 = shifted(tensors, realisticDeltas(tensors, 1), 1)
    v1 = await accept('target-1', t1, 7)
    const t2 = shifted(t1, realisticDeltas(t1, 2), 1)
    v2 = await accept('target-2', t2, 8)

    const fold = await foldWorld(w)
    for (const v of fold.versions) {
      byHand[v.id] = await byHandUnits(w, v)
    }
  })

  after(async () => {
    await w?.store.stop()
    await removeDir(dir)
  })

  it('resolves the live version, any version of the history by prefix, and refuses an unknown one', async () => {
    const versions = createChainModelVersions({ store: () => store })
    const fold = await foldWorld(w)
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
      const v0 = (await foldWorld(w)).versions[0].id
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
    const fold = await foldWorld(w)
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
