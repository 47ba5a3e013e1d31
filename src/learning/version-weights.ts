/**
 * The float32 weights of a model version, materialised from the chain
 * (protocols/delta.md, "Apply"): a unit's weights at version V are its
 * Layer block's tensors (upcast to f32, exact) with every delta of that unit
 * accepted up to V applied in acceptance order (VersionInfo.units, from the
 * fold), each with delta-apply.ts's fixed-order math. Every node holding
 * the same blocks gets bit-identical weights (weights-hash.ts hashes them).
 *
 * This is the one place the chain's deltas become weights: `delta propose`
 * diffs a checkpoint against it, the validator loads base and candidate
 * from it, and the versioned chain loader serves from it (through
 * model-versions.ts, which implements model/weights-version.ts with it).
 *
 * Every accepted delta is read from the store and checked against what the
 * version says it is (a Delta block of this model and this unit, with a
 * payload that decodes with the codec its header names) before it is
 * applied; a failure names the delta, the unit and the version.
 *
 * Memory: a unit's weights are held as fresh f32 arrays (4 bytes per
 * parameter) plus, while it is read, the Layer block's payload; a delta is
 * decoded whole (its canonical body and the decoded arrays) and dropped
 * once applied. Reads only; writes nothing.
 */
import { BlockType } from '../chain/types.ts'
import { findUnitBlock, loadUnitTensors } from '../model/chain-loader.ts'
import { LayerRange } from '../model/qwen3/layer-range.ts'
import { MapWeightSource } from '../model/weight-source.ts'
import { decodeDeltaPayload, isDeltaCodec } from '../protocols/delta.ts'
import { fromHex, toHex } from '../protocols/hex.ts'
import { DeltaField } from '../protocols/learning-blocks.ts'
import { applyDeltaInPlace } from './delta-apply.ts'
import { toF32Tensors, toRawTensors } from './f32-tensors.ts'
import { readSmallPayload } from './fold/blocks.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import type { F32Tensors } from './f32-tensors.ts'
import type { Hex, VersionInfo } from './fold/types.ts'
import type { ChainStoreApi, SignedHeader, StoredBlock } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { Qwen3Config } from '../model/qwen3/config.ts'
import type { Delta, DeltaCodec } from '../protocols/delta.ts'

/** What of a version the weights depend on: its deltas per unit (VersionInfo.units); its id, when given, names it in errors. */
export type VersionDeltas = Pick<VersionInfo, 'units'> & { id?: Hex }

/** One unit's weights. */
export interface UnitWeights {
  unit: number
  tensors: F32Tensors
}

/** A Delta block decoded (read from the store, or a header and payload at hand). */
export interface LoadedDelta {
  id: Hex
  block: SignedHeader
  unit: number
  codec: DeltaCodec
  delta: Delta
  /** the canonical (decompressed) body: what identifies the delta */
  body: Uint8Array
}

/** The ids of the deltas of `unit` in `version`, in the order they apply (none: the unit is as imported). */
export function unitDeltaIds (version: VersionDeltas, unit: number): Hex[] {
  return version.units.find(u => u.unit === unit)?.deltas ?? []
}

/** What a Delta block must be to be read: of this model (id bytes) and this unit. */
export interface DeltaExpectation {
  model: Uint8Array
  unit: number
}

/**
 * Decodes `payload` as the payload of Delta block `block` with the codec
 * its header names (every rule of protocols/delta.md checked). No store:
 * the caller has the header and the payload. The codec's DeltaFormatError
 * when the payload is not a canonical delta of that codec; LearningError
 * BAD_VERSION_DELTA when the header is no Delta header with a codec and
 * a unit (the store checks those when it takes a block).
 */
export function decodeDeltaBlock (block: SignedHeader, payload: Uint8Array, options: { maxBodyBytes?: number } = {}): LoadedDelta {
  const idHex = toHex(block.id)
  const codec = block.header.fields.get(DeltaField.CODEC)
  const unit = block.header.fields.get(DeltaField.UNIT)
  if (block.header.type !== BlockType.Delta || codec?.kind !== 'string' || !isDeltaCodec(codec.value) || unit?.kind !== 'uint') {
    throw new LearningError(LearningErrorCode.BAD_VERSION_DELTA, `block ${idHex} is no Delta block with a valid codec and unit field`)
  }
  const { delta, body } = decodeDeltaPayload(payload, { codec: codec.value, ...(options.maxBodyBytes != null ? { maxBodyBytes: options.maxBodyBytes } : {}) })
  return { id: idHex, block, unit: Number(unit.value), codec: codec.value, delta, body }
}

/**
 * Reads Delta block `id` and decodes its payload (decodeDeltaBlock).
 * LearningError PAYLOAD_MISSING when the block or its payload is not
 * stored here; BAD_VERSION_DELTA when the block is not a Delta (or, with
 * `expect`, not one of that model's unit); the codec's DeltaFormatError
 * when the payload is not a canonical delta.
 */
export async function readDelta (store: ChainStoreApi, id: Uint8Array | Hex, options: { maxBodyBytes?: number, expect?: DeltaExpectation } = {}): Promise<LoadedDelta> {
  const idBytes = typeof id === 'string' ? fromHex(id) : id
  const idHex = toHex(idBytes)
  const block = await store.get(idBytes)
  if (block == null) {
    throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `Delta block ${idHex} is not stored here (sync it from a peer)`)
  }
  const codec = block.header.fields.get(DeltaField.CODEC)
  const unit = block.header.fields.get(DeltaField.UNIT)
  if (block.header.type !== BlockType.Delta || codec?.kind !== 'string' || !isDeltaCodec(codec.value) || unit?.kind !== 'uint') {
    // the store checked a Delta's header fields when it took the block
    throw new LearningError(LearningErrorCode.BAD_VERSION_DELTA, `block ${idHex} is not a Delta block with a valid codec and unit`)
  }
  const expect = options.expect
  if (expect != null) {
    const model = block.header.fields.get(DeltaField.MODEL)
    if (model?.kind !== 'bytes' || toHex(model.value) !== toHex(expect.model) || unit.value !== BigInt(expect.unit)) {
      throw new LearningError(LearningErrorCode.BAD_VERSION_DELTA, `Delta block ${idHex} is of model ${model?.kind === 'bytes' ? toHex(model.value) : '?'} unit ${unit.value}, not of model ${toHex(expect.model)} unit ${expect.unit}`)
    }
  }
  const payload = await readSmallPayload(store, block)
  if (payload == null) {
    throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `the payload of Delta block ${idHex} is not stored here yet (sync it from a peer)`)
  }
  return decodeDeltaBlock(block, payload, options)
}

/** A unit's imported tensors as fresh f32 arrays (errors name the block: ModelError BLOCK_MISSING / BLOCK_CORRUPT). */
export async function baseUnitWeights (store: ChainStoreApi, manifest: ModelManifest, unit: number): Promise<F32Tensors> {
  // the payload buffer was read for this call only, so tensors viewing it are ours to change
  return toF32Tensors(await loadUnitTensors(store, manifest, unit))
}

/**
 * The f32 weights of `unit` at `version`: the unit's imported tensors with
 * the version's deltas of that unit applied in order. Fresh arrays, owned
 * by the caller. Throws LearningError PAYLOAD_MISSING when a delta or its
 * payload is not stored here (fetch it first), BAD_VERSION_DELTA when an
 * accepted delta is not this unit's, does not decode or does not apply;
 * each names the delta, the unit and (given its id) the version.
 */
export async function unitWeights (store: ChainStoreApi, manifest: ModelManifest, unit: number, version: VersionDeltas): Promise<F32Tensors> {
  const tensors = await baseUnitWeights(store, manifest, unit)
  const where = (id: Hex): string => `accepted delta ${id} (unit ${unit}${version.id != null ? `, version ${version.id}` : ''} of model ${manifest.idHex})`
  for (const id of unitDeltaIds(version, unit)) {
    let loaded: LoadedDelta
    try {
      loaded = await readDelta(store, id, { expect: { model: manifest.id, unit } })
    } catch (err: any) {
      if (err instanceof LearningError) {
        throw new LearningError(err.code as LearningErrorCode, `${where(id)}: ${err.message}`, { cause: err })
      }
      throw new LearningError(LearningErrorCode.BAD_VERSION_DELTA, `${where(id)} does not decode: ${String(err?.message ?? err)}`, { cause: err })
    }
    try {
      applyDeltaInPlace(tensors, loaded.delta)
    } catch (err: any) {
      throw new LearningError(LearningErrorCode.BAD_VERSION_DELTA, `${where(id)} does not apply: ${String(err?.message ?? err)}`, { cause: err })
    }
  }
  return tensors
}

/** Every unit's weights at `version`, units ascending (the whole model: 4 bytes per parameter). */
export async function versionWeights (store: ChainStoreApi, manifest: ModelManifest, version: VersionDeltas): Promise<UnitWeights[]> {
  const out: UnitWeights[] = []
  for (const u of manifest.units) {
    out.push({ unit: u.unit, tensors: await unitWeights(store, manifest, u.unit, version) })
  }
  return out
}

/** The Layer block and Delta blocks whose payloads the weights of `version` need (to fetch them before reading). */
export async function versionBlocks (store: ChainStoreApi, manifest: ModelManifest, version: VersionDeltas): Promise<{ layers: Array<StoredBlock | undefined>, deltas: Hex[] }> {
  const layers: Array<StoredBlock | undefined> = []
  for (const u of manifest.units) {
    layers.push(await findUnitBlock(store, manifest, u))
  }
  return { layers, deltas: version.units.flatMap(u => u.deltas) }
}

/** A WeightSource over materialised units (the tensors' memory is shared, not copied). */
export function weightSourceOf (units: readonly UnitWeights[], label?: string): MapWeightSource {
  const all = new Map()
  for (const u of units) {
    for (const [name, t] of toRawTensors(u.tensors)) {
      all.set(name, t)
    }
  }
  return new MapWeightSource(all, label)
}

/**
 * The whole model (embedding, every layer, head) over materialised units,
 * ready for eval-loss.ts. Its tensors may share memory with `units` (tfjs
 * keeps a typed array it is given): leave the units unchanged while the
 * model is in use; dispose() it when done.
 */
export async function loadWholeModel (config: Qwen3Config, units: readonly UnitWeights[], options: { workers?: number, label?: string } = {}): Promise<LayerRange> {
  return LayerRange.load(config, weightSourceOf(units, options.label), { start: 0, end: config.numLayers, embedding: true, head: true, ...(options.workers != null ? { workers: options.workers } : {}) })
}
