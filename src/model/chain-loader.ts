/**
 * The chain loader: the only way the model math gets weights in production.
 * A model is a ModelManifest block (chain A); each unit's tensors are the
 * payload of a Layer block (chain B) naming that manifest. Every payload
 * chunk is hash-checked by the store as it is read, the whole payload is
 * checked against the sha-256 the manifest lists, and a block that is missing
 * or fails a check is an error naming the block and the unit — there is no
 * fallback to any file.
 */
import { createHash } from 'node:crypto'
import { BlockType, ChainError, ChainErrorCode, equalBytes } from '../chain/index.ts'
import { toHex } from '../protocols/hex.ts'
import { ModelError, ModelErrorCode } from './errors.ts'
import { LayerField, MIN_MODEL_ID_PREFIX } from './import/constants.ts'
import { parseManifest } from './import/manifest.ts'
import { LayerRange } from './qwen3/layer-range.ts'
import { decodeSafetensors } from './safetensors/reader.ts'
import { formatUnitList } from './unit-list.ts'
import type { ChainStoreApi, StoredBlock } from '../chain/index.ts'
import type { ManifestUnit, ParsedManifest } from './import/manifest.ts'
import type { LayerRangeInit } from './qwen3/layer-range.ts'
import type { RawTensor } from './safetensors/dtypes.ts'
import type { WeightSource } from './weight-source.ts'
import type { WeightsVersion } from './weights-version.ts'

/** A manifest read from the chain, with its block's id and author. */
export interface ModelManifest extends ParsedManifest {
  id: Uint8Array
  idHex: string
  author: Uint8Array
}

/** Reads a block's whole payload into one buffer (chunks verified by the store); errors name the block. */
async function readBlockPayload (store: ChainStoreApi, block: StoredBlock, what: string): Promise<Uint8Array> {
  const idHex = toHex(block.id)
  const size = Number(block.header.payloadSize)
  const out = new Uint8Array(size)
  let at = 0
  try {
    for await (const chunk of store.readPayload(block.id)) {
      if (at + chunk.byteLength > size) {
        throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, 'payload longer than its header says', { blockId: idHex })
      }
      out.set(chunk, at)
      at += chunk.byteLength
    }
  } catch (err: any) {
    const missing = err?.code === ChainErrorCode.CHUNK_MISSING || err?.code === ChainErrorCode.BLOCK_NOT_FOUND
    throw new ModelError(missing ? ModelErrorCode.BLOCK_MISSING : ModelErrorCode.BLOCK_CORRUPT, `cannot read ${what} from block ${idHex}: ${String(err?.message ?? err)}`, {}, { cause: err })
  }
  if (at !== size) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `${what}: block ${idHex} payload is ${at} bytes, its header says ${size}`)
  }
  return out
}

/** Reads and checks the manifest of `modelId` (a ModelManifest block on chain A). */
export async function loadModelManifest (store: ChainStoreApi, modelId: Uint8Array): Promise<ModelManifest> {
  const idHex = toHex(modelId)
  const block = await store.get(modelId)
  if (block == null) {
    throw new ModelError(ModelErrorCode.MODEL_NOT_FOUND, `no model ${idHex} on chain A`)
  }
  if (block.header.type !== BlockType.ModelManifest) {
    throw new ModelError(ModelErrorCode.MODEL_NOT_FOUND, `block ${idHex} is not a model manifest`)
  }
  const bytes = await readBlockPayload(store, block, 'the model manifest')
  const parsed = parseManifest(bytes, `manifest block ${idHex}`)
  return { ...parsed, id: new Uint8Array(modelId), idHex, author: block.header.author }
}

/** Turns a full hex model id, or a unique prefix of >= 8 hex characters, into the manifest id. */
export async function resolveModelId (store: ChainStoreApi, text: string): Promise<Uint8Array> {
  const hex = text.trim().toLowerCase()
  if (!/^[0-9a-f]+$/.test(hex) || hex.length < MIN_MODEL_ID_PREFIX || hex.length > 64) {
    throw new ModelError(ModelErrorCode.MODEL_NOT_FOUND, `model id must be 64 hex characters or a unique prefix of at least ${MIN_MODEL_ID_PREFIX} (got ${JSON.stringify(text)})`)
  }
  if (hex.length === 64) {
    return Uint8Array.from(Buffer.from(hex, 'hex'))
  }
  const matches: Uint8Array[] = []
  for await (const block of store.byType(BlockType.ModelManifest)) {
    if (toHex(block.id).startsWith(hex)) {
      matches.push(block.id)
    }
  }
  if (matches.length === 0) {
    throw new ModelError(ModelErrorCode.MODEL_NOT_FOUND, `no model on chain A has an id starting with ${hex}`)
  }
  if (matches.length > 1) {
    throw new ModelError(ModelErrorCode.AMBIGUOUS_MODEL, `${matches.length} models have ids starting with ${hex}: ${matches.map(toHex).join(', ')}`)
  }
  return matches[0]
}

/**
 * The layer block the manifest's publisher stored for `unit`: the one whose
 * size and sha-256 field match the manifest. Undefined when none does.
 */
export async function findUnitBlock (store: ChainStoreApi, manifest: ModelManifest, unit: ManifestUnit): Promise<StoredBlock | undefined> {
  const want = Buffer.from(unit.sha256, 'hex')
  let incomplete: StoredBlock | undefined
  for (const block of await store.byModelUnit(manifest.id, unit.unit)) {
    const h = block.header
    if (!equalBytes(h.author, manifest.author) || h.payloadSize !== BigInt(unit.bytes)) {
      continue
    }
    const sha = h.fields.get(LayerField.SHA256)
    if (sha?.kind === 'bytes' && equalBytes(sha.value, want)) {
      if (block.payloadComplete) {
        return block
      }
      incomplete ??= block
    }
  }
  return incomplete
}

/** Where one unit of a model stands in the local store. */
export interface UnitState {
  unit: number
  /** the unit's layer block (findUnitBlock), if its header is stored */
  block?: StoredBlock
  /** the layer block and its whole payload are stored */
  stored: boolean
}

/**
 * Each unit of `manifest` as the local store holds it. A unit is stored when
 * the layer block the manifest names (its publisher's, with the manifest's
 * size and sha-256) is present with its whole payload; otherwise it is
 * missing (e.g. after a crash mid-import, or while a node still syncs).
 */
export async function unitStates (store: ChainStoreApi, manifest: ModelManifest): Promise<UnitState[]> {
  const out: UnitState[] = []
  for (const unit of manifest.units) {
    const block = await findUnitBlock(store, manifest, unit)
    out.push({ unit: unit.unit, ...(block != null ? { block } : {}), stored: block?.payloadComplete === true })
  }
  return out
}

/** The unit indexes of `manifest` whose layer block or payload is not stored locally, ascending. */
export async function missingUnits (store: ChainStoreApi, manifest: ModelManifest): Promise<number[]> {
  return (await unitStates(store, manifest)).filter(u => !u.stored).map(u => u.unit)
}

export { formatUnitList } from './unit-list.ts'

/** ERR_MODEL_INCOMPLETE naming the missing units of `manifest` (and what they are). */
export function incompleteModelError (manifest: ModelManifest, missing: readonly number[], context = '', cause?: unknown): ModelError {
  const kinds = missing.map(u => {
    const plan = manifest.units[u]
    if (plan == null) {
      return `unit ${u}`
    }
    return plan.layer != null ? `layer ${plan.layer}` : plan.kind
  })
  const shown = kinds.length > 8 ? `${kinds.slice(0, 8).join(', ')}, ...` : kinds.join(', ')
  return new ModelError(ModelErrorCode.MODEL_INCOMPLETE, `model ${manifest.idHex} is incomplete here: ${missing.length} of ${manifest.units.length} units missing (unit${missing.length === 1 ? '' : 's'} ${formatUnitList(missing)}: ${shown})${context} - finish the import (blyd model import, it resumes) or sync the blocks from a peer`, {}, cause != null ? { cause } : undefined)
}

/** Reads one unit's tensors from its layer block, verified against the manifest. */
export async function loadUnitTensors (store: ChainStoreApi, manifest: ModelManifest, unitIndex: number): Promise<Map<string, RawTensor>> {
  const unit = manifest.units[unitIndex]
  if (unit == null) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `model ${manifest.idHex} has no unit ${unitIndex} (it has ${manifest.units.length})`)
  }
  const what = `unit ${unit.unit} (${unit.kind}) of model ${manifest.idHex}`
  const block = await findUnitBlock(store, manifest, unit)
  if (block == null) {
    throw new ModelError(ModelErrorCode.BLOCK_MISSING, `no layer block for ${what} on chain B (sync it from a peer or import the checkpoint)`)
  }
  const idHex = toHex(block.id)
  if (!block.payloadComplete) {
    throw new ModelError(ModelErrorCode.BLOCK_MISSING, `the payload of layer block ${idHex} (${what}) is not stored locally yet`)
  }
  const bytes = await readBlockPayload(store, block, what)
  const got = createHash('sha256').update(bytes).digest('hex')
  if (got !== unit.sha256) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `layer block ${idHex} (${what}) hashes to ${got}, the manifest lists ${unit.sha256}`)
  }
  let tensors: Map<string, RawTensor>
  try {
    tensors = decodeSafetensors(bytes, `block ${idHex}`).tensors
  } catch (err: any) {
    throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `layer block ${idHex} (${what}) is not valid safetensors: ${err.message}`, {}, { cause: err })
  }
  for (const spec of unit.tensors) {
    const t = tensors.get(spec.name)
    if (t == null || t.dtype !== spec.dtype || t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new ModelError(ModelErrorCode.BLOCK_CORRUPT, `layer block ${idHex} (${what}) does not hold ${spec.name} as the manifest lists it`)
    }
  }
  return tensors
}

export interface ChainWeightSourceInit {
  store: ChainStoreApi
  manifest: ModelManifest
  /** first unit served (0 = embedding, 1..L = decoder layers, L+1 = norm + head) */
  start: number
  /** one past the last unit served */
  end: number
  /** the weights version to serve: its changed units are read from it instead of their Layer blocks (default: the imported weights) */
  version?: WeightsVersion
}

/**
 * WeightSource over the layer blocks of units [start, end) of one model,
 * in one weights version when given one (the units the version changes come
 * from it, float32, instead of from their Layer blocks). Units are read on
 * first use; one decoded unit is kept (LayerRange.load asks unit by unit), so
 * memory stays at about one unit's payload (or its float32 tensors). With
 * tied embeddings a range holding the head also serves embed_tokens from unit 0.
 */
export class ChainWeightSource implements WeightSource {
  readonly label: string
  readonly start: number
  readonly end: number
  private readonly store: ChainStoreApi
  private readonly manifest: ModelManifest
  private readonly unitOf: Map<string, number>
  private readonly allowed: Set<number>
  private readonly version?: WeightsVersion
  private readonly changed: ReadonlySet<number>
  private current: { unit: number, tensors: Promise<Map<string, RawTensor>> } | undefined

  constructor (init: ChainWeightSourceInit) {
    const { manifest, start, end } = init
    const count = manifest.units.length
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > count) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `unit range [${start}, ${end}) is not inside [0, ${count})`)
    }
    this.store = init.store
    this.manifest = manifest
    this.start = start
    this.end = end
    this.version = init.version
    this.changed = new Set(init.version?.changedUnits ?? [])
    this.label = `chain model ${manifest.idHex}${init.version != null ? ` version ${init.version.id}` : ''}`
    this.unitOf = new Map()
    for (const u of manifest.units) {
      for (const t of u.tensors) {
        this.unitOf.set(t.name, u.unit)
      }
    }
    this.allowed = new Set()
    for (let u = start; u < end; u++) {
      this.allowed.add(u)
    }
    if (manifest.qwen3.tieWordEmbeddings && this.allowed.has(count - 1)) {
      this.allowed.add(0)
    }
  }

  /** Units [start, end) a LayerRange with `init` needs. */
  static unitRange (numLayers: number, init: LayerRangeInit): { start: number, end: number } {
    return {
      start: init.embedding === true ? 0 : init.start + 1,
      end: init.head === true ? numLayers + 2 : init.end + 1
    }
  }

  async get (name: string): Promise<RawTensor | undefined> {
    const unit = this.unitOf.get(name)
    if (unit == null || !this.allowed.has(unit)) {
      return undefined
    }
    if (this.current?.unit !== unit) {
      const tensors = this.readUnit(unit)
      tensors.catch(() => {})
      this.current = { unit, tensors }
    }
    const tensors = await this.current.tensors
    return tensors.get(name)
  }

  /** The unit's tensors in the version served: from the version when it changes the unit, else from the Layer block. */
  private async readUnit (unit: number): Promise<Map<string, RawTensor>> {
    if (this.version != null && this.changed.has(unit)) {
      const tensors = await this.version.unitTensors(unit)
      if (tensors != null) {
        return tensors
      }
    }
    return loadUnitTensors(this.store, this.manifest, unit)
  }

  /** Drops the decoded unit held (call once the weights are loaded). */
  release (): void {
    this.current = undefined
  }
}

/**
 * Loads a LayerRange of `manifest`'s model from the chain, in weights
 * version `version` when given (default: the imported weights). Every unit
 * the range needs is checked first: when some are not stored locally it
 * throws ERR_MODEL_INCOMPLETE naming all of them, before any weight is read.
 */
export async function loadLayerRangeFromChain (store: ChainStoreApi, manifest: ModelManifest, init: LayerRangeInit, version?: WeightsVersion): Promise<LayerRange> {
  const head = manifest.qwen3.numLayers + 1
  // the units this range reads: decoder layer i is unit i + 1; a tied head reads the embedding (unit 0)
  const needs = (u: number): boolean => (u >= init.start + 1 && u < init.end + 1) ||
    (u === 0 && (init.embedding === true || (init.head === true && manifest.qwen3.tieWordEmbeddings))) ||
    (u === head && init.head === true)
  const missing = (await missingUnits(store, manifest)).filter(needs)
  if (missing.length > 0) {
    throw incompleteModelError(manifest, missing)
  }
  const source = new ChainWeightSource({ store, manifest, ...ChainWeightSource.unitRange(manifest.qwen3.numLayers, init), ...(version != null ? { version } : {}) })
  try {
    return await LayerRange.load(manifest.qwen3, source, init)
  } finally {
    source.release()
  }
}
