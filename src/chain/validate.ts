/**
 * Block validation rules, each with its own error code (see errors.ts).
 * Stateless rules live in `decodeAndValidate`; rules that need the parents
 * (per-type publishing rules) in `validateAgainstParents`; payload bytes in
 * `validateChunk` / `payloadChunkLength`.
 */
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { DATASET_NAME_PATTERN, DatasetField, DatasetFormat, MAX_DATASET_BYTES, MAX_EVAL_PERMILLE, MAX_SPLIT_TOKENS, MIN_SPLIT_TOKENS } from '../protocols/dataset.ts'
import { toHex } from '../protocols/hex.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { blockId, ed25519PublicKey, verifyBlockSignature } from './block-crypto.ts'
import { ID_LENGTH } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { BLOCK_TYPE_CHAIN, BlockType, ChainId } from './types.ts'
import { isLearningBlockType, validateLearningHeader, validateLearningParents } from './validate-learning.ts'
import { isLedgerBlockType, validateLedgerHeader, validateLedgerParents } from './validate-ledger.ts'
import type { ChainLimits } from './constants.ts'
import type { BlockHeader, DecodedBlock, SignedHeader } from './types.ts'
import type { KeyObject } from 'node:crypto'

/** the hex form of ids (protocols/hex.ts), for this part's importers */
export { toHex }

/** Header fields a Layer block must carry. */
export const LAYER_FIELD_MODEL = 'model'
export const LAYER_FIELD_UNIT = 'unit'

/** Number of chunks a payload of `payloadSize` bytes has at `chunkSize`. */
export function expectedChunkCount (payloadSize: bigint, chunkSize: number): number {
  if (payloadSize === 0n) {
    return 0
  }
  const size = BigInt(chunkSize)
  return Number((payloadSize + size - 1n) / size)
}

/** Byte length of chunk `index` of a (validated) header. */
export function payloadChunkLength (header: BlockHeader, index: number): number {
  const count = header.chunkHashes.length
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, `chunk index ${index} out of range 0..${count - 1}`)
  }
  if (index < count - 1) {
    return header.chunkSize
  }
  return Number(header.payloadSize - BigInt(header.chunkSize) * BigInt(count - 1))
}

/** The Layer block's (model, unit) fields, or undefined for other types. */
export function layerCoordinates (header: BlockHeader): { model: Uint8Array, unit: number } | undefined {
  if (header.type !== BlockType.Layer) {
    return undefined
  }
  const model = header.fields.get(LAYER_FIELD_MODEL)
  const unit = header.fields.get(LAYER_FIELD_UNIT)
  if (model?.kind !== 'bytes' || unit?.kind !== 'uint') {
    return undefined
  }
  return { model: model.value, unit: Number(unit.value) }
}

/** Size rules: ERR_TOO_MANY_PARENTS, ERR_PAYLOAD_TOO_LARGE, ERR_PAYLOAD_SIZE, ERR_CHUNK_LENGTH (one hash named at two lengths). */
export function validateSizes (header: BlockHeader, limits: ChainLimits, blockIdHex?: string): void {
  const opts = { blockId: blockIdHex }
  if (header.parents.length > limits.maxParents) {
    throw new ChainError(ChainErrorCode.TOO_MANY_PARENTS, `${header.parents.length} parents, at most ${limits.maxParents} allowed`, opts)
  }
  if (header.fields.size > limits.maxFields) {
    throw new ChainError(ChainErrorCode.BLOCK_ENCODING, `${header.fields.size} typed fields, at most ${limits.maxFields} allowed`, opts)
  }
  if (header.payloadSize > limits.maxPayloadSize) {
    throw new ChainError(ChainErrorCode.PAYLOAD_TOO_LARGE, `payload of ${header.payloadSize} bytes exceeds the limit of ${limits.maxPayloadSize}`, opts)
  }
  if (header.chunkSize > limits.maxChunkSize) {
    throw new ChainError(ChainErrorCode.PAYLOAD_TOO_LARGE, `chunk size ${header.chunkSize} exceeds the limit of ${limits.maxChunkSize}`, opts)
  }
  if (header.payloadSize === 0n) {
    if (header.chunkSize !== 0 || header.chunkHashes.length !== 0) {
      throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, 'an empty payload must have chunk size 0 and no chunk hashes', opts)
    }
    return
  }
  if (header.chunkSize < limits.minChunkSize) {
    throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, `chunk size ${header.chunkSize} below the minimum of ${limits.minChunkSize}`, opts)
  }
  const expected = expectedChunkCount(header.payloadSize, header.chunkSize)
  if (header.chunkHashes.length !== expected) {
    throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, `${header.chunkHashes.length} chunk hashes for a payload of ${header.payloadSize} bytes in chunks of ${header.chunkSize} (expected ${expected})`, opts)
  }
  // every chunk but the last is chunkSize long: a last chunk of another
  // length whose hash is also named earlier is one hash at two lengths
  const last = expected - 1
  const lastLength = payloadChunkLength(header, last)
  if (lastLength !== header.chunkSize) {
    const lastHash = header.chunkHashes[last]
    const twin = header.chunkHashes.findIndex((h, i) => i < last && equalBytes(h, lastHash))
    if (twin >= 0) {
      throw new ChainError(ChainErrorCode.CHUNK_LENGTH, `chunk ${twin} (${header.chunkSize} bytes) and chunk ${last} (${lastLength} bytes) name the same hash: no chunk has two lengths`, opts)
    }
  }
}

/**
 * Chain and per-type field rules that need no other block: ERR_BLOCK_TYPE,
 * the Dataset rules, the learning blocks' (validate-learning.ts) and the
 * ledger blocks' (validate-ledger.ts).
 */
export function validateType (header: BlockHeader, blockIdHex?: string): void {
  const opts = { blockId: blockIdHex }
  const expectedChain = BLOCK_TYPE_CHAIN[header.type]
  if (expectedChain == null) {
    throw new ChainError(ChainErrorCode.BLOCK_TYPE, `unknown block type ${header.type}`, opts)
  }
  if (header.chain !== ChainId.A && header.chain !== ChainId.B) {
    throw new ChainError(ChainErrorCode.BLOCK_TYPE, `unknown chain ${header.chain}`, opts)
  }
  if (header.chain !== expectedChain) {
    throw new ChainError(ChainErrorCode.BLOCK_TYPE, `block type ${header.type} belongs on chain ${expectedChain}, not ${header.chain}`, opts)
  }
  if (header.type === BlockType.Layer) {
    const model = header.fields.get(LAYER_FIELD_MODEL)
    const unit = header.fields.get(LAYER_FIELD_UNIT)
    if (model?.kind !== 'bytes' || model.value.length !== ID_LENGTH) {
      throw new ChainError(ChainErrorCode.BLOCK_TYPE, `a Layer block needs field '${LAYER_FIELD_MODEL}' (bytes, the ${ID_LENGTH}-byte manifest id)`, opts)
    }
    if (unit?.kind !== 'uint' || unit.value > 0xffffffffn) {
      throw new ChainError(ChainErrorCode.BLOCK_TYPE, `a Layer block needs field '${LAYER_FIELD_UNIT}' (uint32)`, opts)
    }
    if (!header.parents.some(p => equalBytes(p, model.value))) {
      throw new ChainError(ChainErrorCode.BLOCK_TYPE, 'a Layer block must list its model manifest among its parents', opts)
    }
  }
  if (header.type === BlockType.Dataset) {
    validateDatasetHeader(header, blockIdHex)
  }
  validateLearningHeader(header, blockIdHex)
  validateLedgerHeader(header, blockIdHex)
}

/**
 * A Dataset block's header (protocols/dataset.md): exactly the fields name,
 * format, sequences, tokens, bytes, evalPermille, splitTokens, and model for
 * the ids format (ERR_DATASET_BLOCK_FIELDS); a payload of `bytes` bytes, at
 * most MAX_DATASET_BYTES, of the canonical ids size for ids
 * (ERR_DATASET_BLOCK_PAYLOAD); an ids dataset lists its model among its
 * parents (ERR_DATASET_BLOCK_PARENT).
 */
export function validateDatasetHeader (header: BlockHeader, blockIdHex?: string): void {
  const opts = { blockId: blockIdHex }
  const { format, sequences, tokens, bytes, model } = datasetFields(header, opts)
  const payloadError = (message: string): ChainError => new ChainError(ChainErrorCode.DATASET_PAYLOAD, message, opts)
  if (header.payloadSize === 0n) {
    throw payloadError('a Dataset block needs a payload')
  }
  if (header.payloadSize > BigInt(MAX_DATASET_BYTES)) {
    throw payloadError(`a Dataset payload of ${header.payloadSize} bytes exceeds the limit of ${MAX_DATASET_BYTES}`)
  }
  if (bytes !== header.payloadSize) {
    throw payloadError(`'${DatasetField.BYTES}' is ${bytes} but the payload is ${header.payloadSize} bytes`)
  }
  // idsPayloadSize in bigint: the header's counts are uint64
  const idsSize = 4n + 4n * sequences + 4n * tokens
  if (format === DatasetFormat.IDS && header.payloadSize !== idsSize) {
    throw payloadError(`an ids payload of ${sequences} sequences and ${tokens} tokens is ${idsSize} bytes, not ${header.payloadSize}`)
  }
  if (model != null && !header.parents.some(p => equalBytes(p, model))) {
    throw new ChainError(ChainErrorCode.DATASET_PARENT, 'an ids Dataset block must list its model manifest among its parents', opts)
  }
}

function checkSplitFields (evalPermille: bigint, splitTokens: bigint, fieldError: (message: string) => ChainError): void {
  if (evalPermille > BigInt(MAX_EVAL_PERMILLE)) {
    throw fieldError(`'${DatasetField.EVAL_PERMILLE}' is ${evalPermille}, at most ${MAX_EVAL_PERMILLE}`)
  }
  if (splitTokens < BigInt(MIN_SPLIT_TOKENS) || splitTokens > BigInt(MAX_SPLIT_TOKENS)) {
    throw fieldError(`'${DatasetField.SPLIT_TOKENS}' is ${splitTokens}, not in ${MIN_SPLIT_TOKENS}..${MAX_SPLIT_TOKENS}`)
  }
}

/** The Dataset header's fields, each checked (ERR_DATASET_BLOCK_FIELDS). */
function datasetFields (header: BlockHeader, opts: { blockId?: string }): { format: string, sequences: bigint, tokens: bigint, bytes: bigint, model?: Uint8Array } {
  const fieldError = (message: string): ChainError => new ChainError(ChainErrorCode.DATASET_FIELDS, message, opts)
  const uint = (key: string): bigint => {
    const f = header.fields.get(key)
    if (f?.kind !== 'uint') {
      throw fieldError(`a Dataset block needs field '${key}' (uint)`)
    }
    return f.value
  }
  const name = header.fields.get(DatasetField.NAME)
  if (name?.kind !== 'string' || !DATASET_NAME_PATTERN.test(name.value)) {
    throw fieldError(`a Dataset block needs field '${DatasetField.NAME}' (string matching ${DATASET_NAME_PATTERN.source})`)
  }
  const format = header.fields.get(DatasetField.FORMAT)
  if (format?.kind !== 'string' || (format.value !== DatasetFormat.TEXT && format.value !== DatasetFormat.IDS)) {
    throw fieldError(`a Dataset block needs field '${DatasetField.FORMAT}' ('${DatasetFormat.TEXT}' or '${DatasetFormat.IDS}')`)
  }
  const sequences = uint(DatasetField.SEQUENCES)
  const tokens = uint(DatasetField.TOKENS)
  const bytes = uint(DatasetField.BYTES)
  checkSplitFields(uint(DatasetField.EVAL_PERMILLE), uint(DatasetField.SPLIT_TOKENS), fieldError)
  const known: string[] = Object.values(DatasetField)
  const unknown = [...header.fields.keys()].find(key => !known.includes(key))
  if (unknown != null) {
    throw fieldError(`a Dataset block may not carry field '${unknown}'`)
  }
  const model = header.fields.get(DatasetField.MODEL)
  if (format.value === DatasetFormat.TEXT) {
    if (model != null) {
      throw fieldError(`a text Dataset block may not carry field '${DatasetField.MODEL}'`)
    }
    if (sequences !== 1n || tokens !== 0n) {
      throw fieldError(`a text Dataset block has sequences = 1 and tokens = 0 (got ${sequences}, ${tokens})`)
    }
    return { format: format.value, sequences, tokens, bytes }
  }
  if (model?.kind !== 'bytes' || model.value.length !== ID_LENGTH) {
    throw fieldError(`an ids Dataset block needs field '${DatasetField.MODEL}' (bytes, the ${ID_LENGTH}-byte manifest id)`)
  }
  if (sequences < 1n || tokens < 2n * sequences) {
    throw fieldError(`an ids Dataset block needs >= 1 sequence of >= 2 tokens each (got ${sequences} sequences, ${tokens} tokens)`)
  }
  return { format: format.value, sequences, tokens, bytes, model: model.value }
}

export interface DecodeOptions {
  limits: ChainLimits
  /** the id the block was requested or announced under (ERR_BLOCK_ID on mismatch) */
  expectedId?: Uint8Array
  /** author KeyObject cache owned by the caller (bounded by the caller) */
  keyCache?: Map<string, KeyObject>
}

/**
 * The stateless rules the bytes alone decide, cheapest first: size of the
 * envelope, encoding, size of the header, expected id. Decodes the header and
 * computes its id (sha-256) once; `validateDecoded` checks the rest. The
 * decoded parents and hashes are views of `signedHeaderBytes`.
 */
export function decodeBlock (signedHeaderBytes: Uint8Array, options: Pick<DecodeOptions, 'limits' | 'expectedId'>): DecodedBlock {
  const { limits } = options
  if (signedHeaderBytes.length > limits.maxHeaderBytes + 128) {
    throw new ChainError(ChainErrorCode.HEADER_TOO_LARGE, `signed header of ${signedHeaderBytes.length} bytes exceeds the limit of ${limits.maxHeaderBytes}`)
  }
  const envelope = decodeSignedBlockHeader(signedHeaderBytes)
  if (envelope.header.length > limits.maxHeaderBytes) {
    throw new ChainError(ChainErrorCode.HEADER_TOO_LARGE, `header of ${envelope.header.length} bytes exceeds the limit of ${limits.maxHeaderBytes}`)
  }
  const header = decodeBlockHeader(envelope.header)
  const id = blockId(envelope.header)
  if (options.expectedId != null && !equalBytes(options.expectedId, id)) {
    throw new ChainError(ChainErrorCode.BLOCK_ID, `block id ${toHex(id)} does not match the expected id ${toHex(options.expectedId)}`, { blockId: toHex(id) })
  }
  return { id, header, headerBytes: envelope.header, signature: envelope.signature } as DecodedBlock
}

/** The other stateless rules, on a block `decodeBlock` decoded: sizes, type, signature. */
export function validateDecoded (block: DecodedBlock, options: Pick<DecodeOptions, 'limits' | 'keyCache'>): void {
  const { header, id } = block
  const idHex = toHex(id)
  validateSizes(header, options.limits, idHex)
  validateType(header, idHex)
  let key: KeyObject | Uint8Array = header.author
  if (options.keyCache != null) {
    const authorHex = toHex(header.author)
    let cached = options.keyCache.get(authorHex)
    if (cached == null) {
      try {
        cached = ed25519PublicKey(header.author)
      } catch (err) {
        throw new ChainError(ChainErrorCode.BLOCK_SIGNATURE, 'author is not a valid Ed25519 public key', { blockId: idHex, cause: err })
      }
      options.keyCache.set(authorHex, cached)
    }
    key = cached
  }
  if (!verifyBlockSignature(key, id, block.signature)) {
    throw new ChainError(ChainErrorCode.BLOCK_SIGNATURE, 'signature does not verify against the author key', { blockId: idHex })
  }
}

/**
 * Every stateless rule, cheapest first: size of the envelope, encoding,
 * expected id, sizes, type, signature. Returns the decoded signed header.
 */
export function decodeAndValidate (signedHeaderBytes: Uint8Array, options: DecodeOptions): SignedHeader {
  const block = decodeBlock(signedHeaderBytes, options)
  validateDecoded(block, options)
  return block
}

/**
 * Rules that need the parents (all present): a Layer block's manifest parent
 * must be a ModelManifest authored by the same key — only the manifest's
 * publisher may publish base layer blocks of that model; the Dataset, the
 * learning blocks' (validate-learning.ts) and the ledger blocks'
 * (validate-ledger.ts) parent rules.
 */
export function validateAgainstParents (block: SignedHeader, parents: Map<string, SignedHeader>): void {
  const idHex = toHex(block.id)
  if (block.header.type === BlockType.Dataset) {
    validateDatasetParents(block, parents)
    return
  }
  if (isLearningBlockType(block.header.type)) {
    validateLearningParents(block, parents)
    return
  }
  if (isLedgerBlockType(block.header.type)) {
    validateLedgerParents(block, parents)
    return
  }
  const layer = layerCoordinates(block.header)
  if (layer == null) {
    return
  }
  const manifest = parents.get(toHex(layer.model))
  if (manifest == null) {
    throw new ChainError(ChainErrorCode.UNKNOWN_PARENT, 'the model manifest parent is not known', { blockId: idHex })
  }
  if (manifest.header.type !== BlockType.ModelManifest) {
    throw new ChainError(ChainErrorCode.BLOCK_TYPE, `the 'model' parent ${toHex(layer.model)} is not a ModelManifest block`, { blockId: idHex })
  }
  if (!equalBytes(manifest.header.author, block.header.author)) {
    throw new ChainError(ChainErrorCode.BLOCK_TYPE, 'only the manifest\'s publisher may publish base layer blocks of that model', { blockId: idHex })
  }
}

/** An ids Dataset block's `model` parent must be a ModelManifest (ERR_DATASET_BLOCK_PARENT); anyone may publish a dataset. */
export function validateDatasetParents (block: SignedHeader, parents: Map<string, SignedHeader>): void {
  const model = block.header.fields.get(DatasetField.MODEL)
  if (model?.kind !== 'bytes') {
    return
  }
  const manifest = parents.get(toHex(model.value))
  if (manifest?.header.type !== BlockType.ModelManifest) {
    throw new ChainError(ChainErrorCode.DATASET_PARENT, `the 'model' parent ${toHex(model.value)} of an ids Dataset block is not a ModelManifest block`, { blockId: toHex(block.id) })
  }
}

/** Check one payload chunk's length and hash: ERR_PAYLOAD_SIZE / ERR_CHUNK_HASH. */
export function validateChunk (block: SignedHeader, index: number, bytes: Uint8Array, hash: Uint8Array): void {
  const idHex = toHex(block.id)
  const expectedLength = payloadChunkLength(block.header, index)
  if (bytes.length !== expectedLength) {
    throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, `chunk ${index} is ${bytes.length} bytes, expected ${expectedLength}`, { blockId: idHex })
  }
  if (!equalBytes(hash, block.header.chunkHashes[index])) {
    throw new ChainError(ChainErrorCode.CHUNK_HASH, `chunk ${index} does not match its hash`, { blockId: idHex })
  }
}
