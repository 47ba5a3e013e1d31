/**
 * The weights of one unit in one version of a model (protocols/versions.md,
 * protocols/delta.md "Apply"): the unit's Layer block tensors upcast to
 * float32 (exact), then every accepted Delta block of that unit applied in
 * version order (acceptance order, then unit order within a proposal, as the
 * fold lists them in VersionInfo.units). Plain typed-array math in a fixed
 * order (delta-apply.ts), so every node computes bit-identical weights.
 *
 * Each Delta is read from the store, its payload decoded and checked
 * against its header (type, model, unit, codec) before it is applied; a
 * delta block or payload not stored here is ERR_MODEL_BLOCK_MISSING, one
 * that does not decode or does not match ERR_MODEL_BLOCK_CORRUPT, both
 * naming the delta, the unit and the version. Memory: the unit's f32
 * tensors plus one decoded delta at a time.
 */
import { BlockType } from '../chain/types.ts'
import { loadUnitTensors } from '../model/chain-loader.ts'
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { isDeltaCodec, decodeDeltaPayload } from '../protocols/delta.ts'
import { DeltaField } from '../protocols/learning-blocks.ts'
import { applyDeltaInPlace } from './delta-apply.ts'
import { toF32Tensors } from './f32-tensors.ts'
import { readSmallPayload, toHex } from './fold/blocks.ts'
import type { F32Tensors } from './f32-tensors.ts'
import type { VersionInfo } from './fold/types.ts'
import type { ChainStoreApi, StoredBlock } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { Delta, DeltaCodec } from '../protocols/delta.ts'

/** What version-weights reads of a version: its id (for messages) and its per-unit delta lists (VersionInfo fits). */
export type VersionUnits = Pick<VersionInfo, 'id' | 'units'>

/** The accepted delta ids of `unit` in `version`, in the order they apply (empty: the unit is the base's). */
export function unitDeltas (version: VersionUnits, unit: number): readonly string[] {
  return version.units.find(u => u.unit === unit)?.deltas ?? []
}

/** The codec a Delta block of `expected.model`'s unit `expected.unit` names; undefined when the block is not one. */
function deltaCodecOf (block: StoredBlock, expected: { model: Uint8Array, unit: number }): DeltaCodec | undefined {
  const h = block.header
  const model = h.fields.get(DeltaField.MODEL)
  const unit = h.fields.get(DeltaField.UNIT)
  const codec = h.fields.get(DeltaField.CODEC)
  if (h.type !== BlockType.Delta || model?.kind !== 'bytes' || toHex(model.value) !== toHex(expected.model) ||
    unit?.kind !== 'uint' || unit.value !== BigInt(expected.unit) || codec?.kind !== 'string' || !isDeltaCodec(codec.value)) {
    return undefined
  }
  return codec.value
}

/**
 * The decoded payload of Delta block `deltaId` (hex), checked to be a Delta
 * of `model`'s unit `unit` whose payload decodes with the codec its header
 * names. `what` names the version for error messages.
 */
export async function readDeltaBlock (store: ChainStoreApi, deltaId: string, expected: { model: Uint8Array, unit: number }, what = ''): Promise<Delta> {
  const where = `delta ${deltaId} of unit ${expected.unit}${what !== '' ? ` (${what})` : ''}`
  const block = await store.get(Uint8Array.from(Buffer.from(deltaId, 'hex')))
  if (block == null) {
    throw new ModelError(ModelErrorCode.BLOCK_MISSING, `${where}: the Delta block is not stored here (sync it from a peer)`)
  }
  const codec = deltaCodecOf(block, expected)
  if (codec == null) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `${where}: block ${deltaId} is not a Delta of model ${toHex(expected.model)} unit ${expected.unit}`)
  }
  let payload: Uint8Array | undefined
  try {
    payload = await readSmallPayload(store, block)
  } catch (err: any) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `${where}: the payload cannot be read: ${String(err?.message ?? err)}`, {}, { cause: err })
  }
  if (payload == null) {
    throw new ModelError(ModelErrorCode.BLOCK_MISSING, `${where}: the payload is not stored here yet (sync it from a peer)`)
  }
  try {
    return decodeDeltaPayload(payload, { codec }).delta
  } catch (err: any) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `${where}: the payload does not decode: ${String(err?.message ?? err)}`, {}, { cause: err })
  }
}

/**
 * The float32 tensors of `unit` of `manifest`'s model in `version`: the
 * base Layer block's tensors upcast to f32, then the unit's accepted deltas
 * applied in order (none: the base tensors as f32). The arrays are fresh and
 * the caller's. Throws ModelError (see the file comment) or
 * WeightDeltaError when a delta does not fit the unit's tensors.
 */
export async function versionUnitWeights (store: ChainStoreApi, manifest: ModelManifest, version: VersionUnits, unit: number): Promise<F32Tensors> {
  const weights = toF32Tensors(await loadUnitTensors(store, manifest, unit))
  const what = `version ${version.id} of model ${manifest.idHex}`
  for (const deltaId of unitDeltas(version, unit)) {
    const delta = await readDeltaBlock(store, deltaId, { model: manifest.id, unit }, what)
    applyDeltaInPlace(weights, delta)
  }
  return weights
}
