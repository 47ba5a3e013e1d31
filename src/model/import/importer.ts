/**
 * `blyd model import`: turns a Hugging Face Qwen3 checkpoint folder into one
 * ModelManifest block on chain A and one Layer block per unit on chain B.
 *
 * First the whole folder is validated (checkpoint-source.ts), nothing
 * written yet. Then every unit's payload is hashed, streamed from the files
 * (the manifest lists each unit's sha-256, so layer blocks are bound to their
 * manifest). Last the manifest is written (parents: none, timestamp 0: its id
 * depends only on the content and the author), then each layer block
 * (parent: the manifest), its payload streamed from the checkpoint into the
 * store.
 *
 * Blocks already in the store are detected by id (the manifest) or by their
 * identifying fields (a layer block with the same model, unit, sha-256, size
 * and author has the same id) and are not written again.
 */
import { basename } from 'node:path'
import { BlockType, ChainId, HEADER_VERSION, blockId, canonicalParents, encodeBlockHeader, equalBytes, sha256 } from '../../chain/index.ts'
import { toHex } from '../../protocols/hex.ts'
import { openImportSource } from './checkpoint-source.ts'
import { IMPORT_CHUNK_SIZE, IMPORT_TIMESTAMP, LayerField, ManifestField, MANIFEST_FORMAT, QWEN3_ARCH } from './constants.ts'
import { encodeManifest } from './manifest.ts'
import { hashUnit, verifiedUnitPayload } from './unit-stream.ts'
import type { ImportSource, UnitSource } from './checkpoint-source.ts'
import type { ManifestDocument } from './manifest.ts'
import type { BlockHeader, BlockSigner, ChainStoreApi, FieldValue, StoredBlock } from '../../chain/index.ts'

export interface ImportProgress {
  /** 'hash': reading the checkpoint to hash each unit; 'write': storing blocks */
  phase: 'hash' | 'write'
  /** bytes done in this phase */
  done: number
  total: number
}

export interface ImportModelInit {
  store: ChainStoreApi
  signer: BlockSigner
  /** checkpoint folder */
  dir: string
  /** a tokenizer.json to use instead of the folder's */
  tokenizer?: string
  /** the manifest's name (default: the folder's name) */
  name?: string
  signal?: AbortSignal
  onProgress?(progress: ImportProgress): void
}

export interface ImportResult {
  /** the manifest block id, hex */
  modelId: string
  name: string
  /** blocks of the model: the manifest + one per unit */
  blocks: number
  /** how many of those were already in the store */
  existing: number
  /** payload bytes of the model's blocks */
  bytes: number
  /** payload bytes stored by this import */
  bytesWritten: number
  units: number
  tokenizer: boolean
  /** checkpoint tensors left out (rotary caches, a tied lm_head) */
  ignored: string[]
}

function fieldMap (fields: Record<string, FieldValue>): Map<string, FieldValue> {
  return new Map(Object.entries(fields))
}

/** The id createBlock will give a block with this content (ids are deterministic: fixed timestamp and chunk size). */
function expectedId (chain: ChainId, type: BlockType, parents: Uint8Array[], fields: Map<string, FieldValue>, payload: Uint8Array, author: Uint8Array): Uint8Array {
  const chunkHashes: Uint8Array[] = []
  for (let at = 0; at < payload.byteLength; at += IMPORT_CHUNK_SIZE) {
    chunkHashes.push(sha256(payload.subarray(at, at + IMPORT_CHUNK_SIZE)))
  }
  const header: BlockHeader = {
    version: HEADER_VERSION,
    chain,
    type,
    parents: canonicalParents(parents),
    author,
    timestamp: IMPORT_TIMESTAMP,
    fields,
    payloadSize: BigInt(payload.byteLength),
    chunkSize: payload.byteLength === 0 ? 0 : IMPORT_CHUNK_SIZE,
    chunkHashes
  }
  return blockId(encodeBlockHeader(header))
}

function layerFields (modelId: Uint8Array, unit: UnitSource, sha: string): Map<string, FieldValue> {
  return fieldMap({
    [LayerField.MODEL]: { kind: 'bytes', value: modelId },
    [LayerField.UNIT]: { kind: 'uint', value: BigInt(unit.plan.unit) },
    [LayerField.KIND]: { kind: 'string', value: unit.plan.kind },
    [LayerField.SHA256]: { kind: 'bytes', value: Uint8Array.from(Buffer.from(sha, 'hex')) }
  })
}

/** The layer block already stored for this unit with exactly the content this import would write, if any. */
async function findLayer (store: ChainStoreApi, modelId: Uint8Array, unit: UnitSource, fields: Map<string, FieldValue>, author: Uint8Array): Promise<StoredBlock | undefined> {
  const want = fields.get(LayerField.SHA256) as { value: Uint8Array }
  for (const block of await store.byModelUnit(modelId, unit.plan.unit)) {
    const h = block.header
    const sha = h.fields.get(LayerField.SHA256)
    const kind = h.fields.get(LayerField.KIND)
    if (equalBytes(h.author, author) && h.timestamp === IMPORT_TIMESTAMP && h.chunkSize === IMPORT_CHUNK_SIZE &&
      h.payloadSize === BigInt(unit.bytes) && h.fields.size === fields.size && h.parents.length === 1 &&
      sha?.kind === 'bytes' && equalBytes(sha.value, want.value) && kind?.kind === 'string' && kind.value === unit.plan.kind) {
      return block
    }
  }
  return undefined
}

/** Stores the chunks of a known block whose payload is not complete locally (e.g. a header synced from a peer). */
async function completePayload (store: ChainStoreApi, block: StoredBlock, unit: UnitSource, sha: string, signal?: AbortSignal, onBytes?: (n: number) => void): Promise<void> {
  const size = block.header.chunkSize
  let buf = new Uint8Array(size)
  let fill = 0
  let index = 0
  for await (const piece of verifiedUnitPayload(unit, sha, { signal, onBytes })) {
    for (let at = 0; at < piece.byteLength;) {
      const n = Math.min(size - fill, piece.byteLength - at)
      buf.set(piece.subarray(at, at + n), fill)
      fill += n
      at += n
      if (fill === size) {
        await store.putChunk(block.id, index++, buf)
        buf = new Uint8Array(size)
        fill = 0
      }
    }
  }
  if (fill > 0) {
    await store.putChunk(block.id, index, buf.subarray(0, fill))
  }
}

/** Validates, hashes and writes `dir` as blocks; see the file comment. */
export async function importModel (init: ImportModelInit): Promise<ImportResult> {
  const { store, signer, signal, onProgress } = init
  const source: ImportSource = await openImportSource(init.dir, { tokenizer: init.tokenizer })
  const name = init.name ?? defaultName(source.dir)

  // pass 1: hash each unit's payload (still nothing written)
  let hashed = 0
  const onHashBytes = (n: number): void => {
    hashed += n
    onProgress?.({ phase: 'hash', done: hashed, total: source.totalBytes })
  }
  const hashes: string[] = []
  for (const unit of source.units) {
    hashes.push(await hashUnit(unit, { signal, onBytes: onHashBytes }))
  }

  const doc: ManifestDocument = {
    format: MANIFEST_FORMAT,
    name,
    arch: QWEN3_ARCH,
    config: source.config.raw,
    tokenizer: source.tokenizer,
    units: source.units.map((u, i) => ({
      unit: u.plan.unit,
      kind: u.plan.kind,
      ...(u.plan.layer != null ? { layer: u.plan.layer } : {}),
      bytes: u.bytes,
      sha256: hashes[i],
      tensors: u.specs
    }))
  }
  const manifestBytes = encodeManifest(doc)
  const manifestFields = fieldMap({
    [ManifestField.NAME]: { kind: 'string', value: name },
    [ManifestField.ARCH]: { kind: 'string', value: QWEN3_ARCH },
    [ManifestField.UNITS]: { kind: 'uint', value: BigInt(source.units.length) }
  })
  const modelId = expectedId(ChainId.A, BlockType.ModelManifest, [], manifestFields, manifestBytes, signer.publicKey)

  // what is already stored, so progress counts only what gets written
  let existing = 0
  let bytesWritten = 0
  const storedManifest = await store.get(modelId)
  const manifestExists = storedManifest?.payloadComplete === true
  const present = await Promise.all(source.units.map(async (u, i) => storedManifest != null
    ? findLayer(store, modelId, u, layerFields(modelId, u, hashes[i]), signer.publicKey)
    : undefined))
  const toWrite = (manifestExists ? 0 : manifestBytes.byteLength) +
    source.units.reduce((n, u, i) => n + (present[i]?.payloadComplete === true ? 0 : u.bytes), 0)
  let written = 0
  const onWriteBytes = (n: number): void => {
    written += n
    onProgress?.({ phase: 'write', done: written, total: toWrite })
  }

  if (manifestExists) {
    existing++
  } else if (storedManifest != null) {
    // the header is known (e.g. synced) but its payload is not: store the chunks
    for (let i = 0; i * IMPORT_CHUNK_SIZE < manifestBytes.byteLength; i++) {
      await store.putChunk(modelId, i, manifestBytes.subarray(i * IMPORT_CHUNK_SIZE, (i + 1) * IMPORT_CHUNK_SIZE))
    }
    existing++
    bytesWritten += manifestBytes.byteLength
    onWriteBytes(manifestBytes.byteLength)
  } else {
    signal?.throwIfAborted()
    const block = await store.createBlock({
      chain: ChainId.A,
      type: BlockType.ModelManifest,
      parents: [],
      fields: manifestFields,
      payload: manifestBytes,
      chunkSize: IMPORT_CHUNK_SIZE,
      timestamp: IMPORT_TIMESTAMP
    }, signer)
    if (!equalBytes(block.id, modelId)) {
      throw new Error(`internal: the manifest was stored as ${toHex(block.id)}, expected ${toHex(modelId)}`)
    }
    bytesWritten += manifestBytes.byteLength
    onWriteBytes(manifestBytes.byteLength)
  }

  for (let i = 0; i < source.units.length; i++) {
    const unit = source.units[i]
    const found = present[i]
    if (found?.payloadComplete === true) {
      existing++
      continue
    }
    if (found != null) {
      await completePayload(store, found, unit, hashes[i], signal, onWriteBytes)
      existing++
      bytesWritten += unit.bytes
      continue
    }
    await store.createBlock({
      chain: ChainId.B,
      type: BlockType.Layer,
      parents: [modelId],
      fields: layerFields(modelId, unit, hashes[i]),
      payload: verifiedUnitPayload(unit, hashes[i], { signal, onBytes: onWriteBytes }),
      chunkSize: IMPORT_CHUNK_SIZE,
      timestamp: IMPORT_TIMESTAMP
    }, signer)
    bytesWritten += unit.bytes
  }

  return {
    modelId: toHex(modelId),
    name,
    blocks: source.units.length + 1,
    existing,
    bytes: manifestBytes.byteLength + source.totalBytes,
    bytesWritten,
    units: source.units.length,
    tokenizer: source.tokenizer != null,
    ignored: source.ignored
  }
}

function defaultName (dir: string): string {
  return basename(dir) || 'model'
}
