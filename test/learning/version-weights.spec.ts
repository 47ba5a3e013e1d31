import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { applyDelta } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { toF32Tensors } from '../../src/learning/f32-tensors.ts'
import { initialVersionId } from '../../src/learning/fold/ids.ts'
import { deltaBlock } from '../../src/learning/new-blocks.ts'
import { LearningErrorCode } from '../../src/learning/pol-errors.ts'
import { readDelta, unitDeltaIds, unitWeights, versionWeights } from '../../src/learning/version-weights.ts'
import { loadModelManifest, loadUnitTensors } from '../../src/model/chain-loader.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { expectCode, openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { bitsOf, randomTensors } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { VersionDeltas } from '../../src/learning/version-weights.ts'
import type { ModelManifest } from '../../src/model/chain-loader.ts'
import type { Delta, DeltaCodec } from '../../src/protocols/delta.ts'

function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** every tensor's bits, by name */
function bitsByName (tensors: F32Tensors): Record<string, string> {
  return Object.fromEntries([...tensors].sort((a, b) => a[0] < b[0] ? -1 : 1).map(([name, t]) => [name, Buffer.from(bitsOf(t.values)).toString('base64')]))
}

describe('learning/version-weights', function () {
  this.timeout(60_000)
  let dir: string
  let store: ChainStore
  let manifest: ModelManifest
  const author = signer(1)

  /** a Delta block of `unit` with seeded differences of std `std` over every tensor of the unit, coded with `codec` */
  async function addDelta (unit: number, seed: number, codec: DeltaCodec): Promise<{ id: string, delta: Delta }> {
    const base = toF32Tensors(await loadUnitTensors(store, manifest, unit))
    const diffs = randomTensors(seed, Object.fromEntries([...base].map(([name, t]) => [name, t.shape])), 0.01)
    const delta = encodeDelta(diffs, { codec, density: 0.2, rank: 4 }).delta as Delta
    const [layer] = await store.byModelUnit(manifest.id, unit)
    const block = await store.createBlock(deltaBlock({ model: manifest.id, layer: layer.id, unit, base: initialVersionId(manifest.id), codec, tensors: delta.tensors.length, payload: encodeDeltaPayload(delta) }), author)
    return { id: hexOf(block.id), delta }
  }

  before(async () => {
    dir = await tempDir('blyd-version-weights-')
    store = await openStore(join(dir, 'chain'))
    const { modelId } = await importModel({ store, signer: author, dir: fixtureDir('untied-f32') })
    manifest = await loadModelManifest(store, Uint8Array.from(Buffer.from(modelId, 'hex')))
  })

  after(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('applies a unit\'s accepted deltas in version order, bit-identical to applying them by hand, two versions deep', async () => {
    const d1 = await addDelta(1, 11, 'f32')
    const d2 = await addDelta(2, 12, 'int8')
    const d3 = await addDelta(1, 13, 'sparse')
    const d4 = await addDelta(5, 14, 'lowrank')
    // V1 = V0 + {d1 (unit 1), d2 (unit 2)}; V2 = V1 + {d3 (unit 1), d4 (unit 5, the head)}
    const v1: VersionDeltas = { id: 'v1', units: [{ unit: 1, deltas: [d1.id] }, { unit: 2, deltas: [d2.id] }] }
    const v2: VersionDeltas = { id: 'v2', units: [{ unit: 1, deltas: [d1.id, d3.id] }, { unit: 2, deltas: [d2.id] }, { unit: 5, deltas: [d4.id] }] }
    expect(unitDeltaIds(v2, 1)).to.deep.equal([d1.id, d3.id])
    expect(unitDeltaIds(v2, 3)).to.deep.equal([])

    const base = async (unit: number): Promise<F32Tensors> => toF32Tensors(await loadUnitTensors(store, manifest, unit))
    const byHand = {
      v1: { 1: applyDelta(await base(1), d1.delta), 2: applyDelta(await base(2), d2.delta) },
      v2: { 1: applyDelta(applyDelta(await base(1), d1.delta), d3.delta), 5: applyDelta(await base(5), d4.delta) }
    }
    expect(bitsByName(await unitWeights(store, manifest, 1, v1))).to.deep.equal(bitsByName(byHand.v1[1]))
    expect(bitsByName(await unitWeights(store, manifest, 2, v1))).to.deep.equal(bitsByName(byHand.v1[2]))
    expect(bitsByName(await unitWeights(store, manifest, 1, v2))).to.deep.equal(bitsByName(byHand.v2[1]))
    expect(bitsByName(await unitWeights(store, manifest, 2, v2))).to.deep.equal(bitsByName(byHand.v1[2]))
    expect(bitsByName(await unitWeights(store, manifest, 5, v2))).to.deep.equal(bitsByName(byHand.v2[5]))
    // a unit without deltas is the base, upcast
    expect(bitsByName(await unitWeights(store, manifest, 3, v2))).to.deep.equal(bitsByName(await base(3)))
    // the order matters: d3 then d1 gives other bits (float32 addition does not associate)
    const swapped: VersionDeltas = { id: 'swapped', units: [{ unit: 1, deltas: [d3.id, d1.id] }] }
    expect(bitsByName(await unitWeights(store, manifest, 1, swapped))).to.not.deep.equal(bitsByName(byHand.v2[1]))
    // the whole model at v2: every unit, units ascending
    const whole = await versionWeights(store, manifest, v2)
    expect(whole.map(u => u.unit)).to.deep.equal(manifest.units.map(u => u.unit))
    expect(bitsByName(whole[5].tensors)).to.deep.equal(bitsByName(byHand.v2[5]))
    // and the version really changed the weights
    expect(bitsByName(byHand.v1[1])).to.not.deep.equal(bitsByName(await base(1)))
  })

  it('names the delta, the unit and the version when a delta is missing or is not the unit\'s', async () => {
    const d = await addDelta(3, 21, 'f32')
    const absent = 'ab'.repeat(32)
    const err = await expectCode(unitWeights(store, manifest, 3, { id: 'vx', units: [{ unit: 3, deltas: [d.id, absent] }] }), LearningErrorCode.PAYLOAD_MISSING)
    expect(err.message).to.include(absent).and.include('unit 3').and.include('version vx')
    // the delta of unit 3 listed for unit 4
    const wrong = await expectCode(unitWeights(store, manifest, 4, { id: 'vy', units: [{ unit: 4, deltas: [d.id] }] }), LearningErrorCode.BAD_VERSION_DELTA)
    expect(wrong.message).to.include(d.id)
    // a block that is no Delta (the manifest)
    await expectCode(readDelta(store, manifest.idHex), LearningErrorCode.BAD_VERSION_DELTA)
    // readDelta with an expectation: another model's or another unit's delta is refused
    await expectCode(readDelta(store, d.id, { expect: { model: manifest.id, unit: 4 } }), LearningErrorCode.BAD_VERSION_DELTA)
    await expectCode(readDelta(store, d.id, { expect: { model: new Uint8Array(32), unit: 3 } }), LearningErrorCode.BAD_VERSION_DELTA)
    expect((await readDelta(store, d.id, { expect: { model: manifest.id, unit: 3 } })).unit).to.equal(3)
  })
})
