/**
 * Datasets on the chain store: write a Dataset block (chain A) signed by the
 * node's key, find datasets by name or id prefix, and read a dataset's token
 * stream (ids decoded from the canonical payload, text tokenized with a
 * model's tokenizer from its manifest).
 *
 * Ordering and durability: every check of the source (size, UTF-8, JSON, id
 * range, name not taken, model known, tokenizer present) runs before
 * `createBlock`, so bad input stores nothing; the block is visible once
 * createBlock returns (one atomic store batch). Name uniqueness is checked
 * against the datasets this store holds: callers serialize their adds (the
 * daemon queues `data.add`, the CLI holds the data dir lock), and two nodes
 * naming a dataset alike at once both keep theirs (lookups by that name then
 * report the ambiguity and list the ids).
 */
import { BlockType, ChainId } from '../chain/types.ts'
import { loadModelManifest, resolveModelId } from '../model/chain-loader.ts'
import { tokenizerFromManifest } from '../model/import/manifest-tokenizer.ts'
import { DATASET_NAME_PATTERN, DatasetCodecError, DatasetField, DatasetFormat, MAX_EVAL_PERMILLE, MAX_SPLIT_TOKENS, MIN_SPLIT_TOKENS, decodeIdsPayload, encodeIdsPayload, isDatasetFormat, singleSequenceStream } from '../protocols/dataset.ts'
import { toHex } from '../protocols/hex.ts'
import { DEFAULT_EVAL_PERMILLE, DEFAULT_SPLIT_TOKENS } from './constants.ts'
import { formatForPath, parseIdsDataset, parseTextDataset, readDatasetFile, decodeUtf8 } from './dataset-parse.ts'
import { datasetWindows } from './dataset-windows.ts'
import { DatasetError, DatasetErrorCode } from './errors.ts'
import type { DatasetWindows } from './dataset-windows.ts'
import type { BlockSigner, ChainStoreApi, FieldValue, StoredBlock } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { TokenStream } from '../protocols/dataset.ts'
import type { DatasetJson } from '../protocols/ipc.ts'

/** A Dataset block's header fields, decoded. */
export interface DatasetHeader {
  name: string
  format: DatasetFormat
  sequences: number
  tokens: number
  bytes: number
  evalPermille: number
  splitTokens: number
  /** ids: the model the ids were checked against */
  model?: Uint8Array
}

/** The fields of a stored Dataset block (the store validated them; a mismatch here is corruption). */
export function datasetHeader (block: StoredBlock): DatasetHeader {
  const f = block.header.fields
  const str = (key: string): string => {
    const v = f.get(key)
    if (v?.kind !== 'string') {
      throw new DatasetError(DatasetErrorCode.CORRUPT, `block ${toHex(block.id)} has no string field '${key}'`)
    }
    return v.value
  }
  const num = (key: string): number => {
    const v = f.get(key)
    if (v?.kind !== 'uint' || v.value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DatasetError(DatasetErrorCode.CORRUPT, `block ${toHex(block.id)} has no uint field '${key}'`)
    }
    return Number(v.value)
  }
  if (block.header.type !== BlockType.Dataset) {
    throw new DatasetError(DatasetErrorCode.NOT_FOUND, `block ${toHex(block.id)} is not a Dataset block`)
  }
  const format = str(DatasetField.FORMAT)
  if (!isDatasetFormat(format)) {
    throw new DatasetError(DatasetErrorCode.CORRUPT, `block ${toHex(block.id)} has an unknown format '${format}'`)
  }
  const model = f.get(DatasetField.MODEL)
  return {
    name: str(DatasetField.NAME),
    format,
    sequences: num(DatasetField.SEQUENCES),
    tokens: num(DatasetField.TOKENS),
    bytes: num(DatasetField.BYTES),
    evalPermille: num(DatasetField.EVAL_PERMILLE),
    splitTokens: num(DatasetField.SPLIT_TOKENS),
    ...(model?.kind === 'bytes' ? { model: model.value } : {})
  }
}

/** Every Dataset block in the store. */
export async function datasetBlocks (store: ChainStoreApi): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for await (const block of store.byType(BlockType.Dataset)) {
    out.push(block)
  }
  return out
}

/**
 * The dataset named `nameOrId`, or whose id is (or starts with) it: an exact
 * name wins; otherwise 8 to 64 hex characters are an id prefix.
 */
export async function findDataset (store: ChainStoreApi, nameOrId: string): Promise<StoredBlock> {
  const blocks = await datasetBlocks(store)
  const named = blocks.filter(b => b.header.fields.get(DatasetField.NAME)?.value === nameOrId)
  if (named.length === 1) {
    return named[0]
  }
  if (named.length > 1) {
    throw new DatasetError(DatasetErrorCode.AMBIGUOUS, `${named.length} datasets are named ${nameOrId}: ${named.map(b => toHex(b.id)).join(', ')} (name one by id)`)
  }
  const hex = nameOrId.toLowerCase()
  if (/^[0-9a-f]{8,64}$/.test(hex)) {
    const matches = blocks.filter(b => toHex(b.id).startsWith(hex))
    if (matches.length === 1) {
      return matches[0]
    }
    if (matches.length > 1) {
      throw new DatasetError(DatasetErrorCode.AMBIGUOUS, `${matches.length} datasets have ids starting with ${hex}: ${matches.map(b => toHex(b.id)).join(', ')}`)
    }
  }
  throw new DatasetError(DatasetErrorCode.NOT_FOUND, `no dataset named ${JSON.stringify(nameOrId)} or with an id starting with it on chain A`)
}

/** The manifest of `model` (hex id or unique prefix). */
async function manifestOf (store: ChainStoreApi, model: string): Promise<ModelManifest> {
  return loadModelManifest(store, await resolveModelId(store, model))
}

/** The model an ids dataset is checked against: the one named, else the only model on chain A. */
async function idsModel (store: ChainStoreApi, model: string | undefined): Promise<ModelManifest> {
  if (model != null) {
    return manifestOf(store, model)
  }
  const ids: Uint8Array[] = []
  for await (const block of store.byType(BlockType.ModelManifest)) {
    ids.push(block.id)
  }
  if (ids.length === 0) {
    throw new DatasetError(DatasetErrorCode.MODEL, 'an ids dataset is checked against a model\'s vocabulary, and there is no model on chain A (import one first)')
  }
  if (ids.length > 1) {
    throw new DatasetError(DatasetErrorCode.MODEL, `an ids dataset is checked against a model's vocabulary: ${ids.length} models are on chain A, name one with --model`)
  }
  return loadModelManifest(store, ids[0])
}

/** Tokens of `text` with `manifest`'s tokenizer (no special tokens added). */
function tokenize (manifest: ModelManifest, text: string): Uint32Array {
  if (manifest.tokenizer == null) {
    throw new DatasetError(DatasetErrorCode.MODEL, `model ${manifest.idHex} (${manifest.name}) has no tokenizer, so a text dataset cannot be tokenized for it (use an ids dataset)`)
  }
  return Uint32Array.from(tokenizerFromManifest(manifest.tokenizer).encode(text))
}

function checkOptions (name: string, format: unknown, evalPermille: number, splitTokens: number): void {
  if (!DATASET_NAME_PATTERN.test(name)) {
    throw new DatasetError(DatasetErrorCode.NAME, `dataset name ${JSON.stringify(name)} is not allowed: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`)
  }
  if (!isDatasetFormat(format)) {
    throw new DatasetError(DatasetErrorCode.OPTION, `format must be ${DatasetFormat.TEXT} or ${DatasetFormat.IDS} (got ${JSON.stringify(format)})`)
  }
  if (!Number.isSafeInteger(evalPermille) || evalPermille < 0 || evalPermille > MAX_EVAL_PERMILLE) {
    throw new DatasetError(DatasetErrorCode.OPTION, `eval-permille must be an integer from 0 to ${MAX_EVAL_PERMILLE} (got ${evalPermille})`)
  }
  if (!Number.isSafeInteger(splitTokens) || splitTokens < MIN_SPLIT_TOKENS || splitTokens > MAX_SPLIT_TOKENS) {
    throw new DatasetError(DatasetErrorCode.OPTION, `split-tokens must be an integer from ${MIN_SPLIT_TOKENS} to ${MAX_SPLIT_TOKENS} (got ${splitTokens})`)
  }
}

async function checkNameFree (store: ChainStoreApi, name: string): Promise<void> {
  for (const block of await datasetBlocks(store)) {
    if (block.header.fields.get(DatasetField.NAME)?.value === name) {
      throw new DatasetError(DatasetErrorCode.NAME_TAKEN, `a dataset named ${name} is already on chain A (${toHex(block.id)})`)
    }
  }
}

export interface AddDatasetOptions {
  store: ChainStoreApi
  signer: BlockSigner
  /** the source file's bytes */
  bytes: Uint8Array
  name: string
  format: DatasetFormat
  /** model id (hex or unique prefix): ids are checked against its vocabulary; text windows are counted with its tokenizer */
  model?: string
  evalPermille?: number
  splitTokens?: number
}

/** Checks the source, then writes the Dataset block; returns it as `data show` describes it. */
export async function addDataset (options: AddDatasetOptions): Promise<DatasetJson> {
  const { store, signer, bytes, name, format } = options
  const evalPermille = options.evalPermille ?? DEFAULT_EVAL_PERMILLE
  const splitTokens = options.splitTokens ?? DEFAULT_SPLIT_TOKENS
  checkOptions(name, format, evalPermille, splitTokens)
  await checkNameFree(store, name)
  let stream: TokenStream | undefined
  let manifest: ModelManifest | undefined
  let payload: Uint8Array
  const fields: Record<string, FieldValue> = {
    [DatasetField.NAME]: { kind: 'string', value: name },
    [DatasetField.FORMAT]: { kind: 'string', value: format },
    [DatasetField.EVAL_PERMILLE]: { kind: 'uint', value: BigInt(evalPermille) },
    [DatasetField.SPLIT_TOKENS]: { kind: 'uint', value: BigInt(splitTokens) }
  }
  if (format === DatasetFormat.IDS) {
    manifest = await idsModel(store, options.model)
    const vocab = manifest.qwen3.vocabSize
    stream = parseIdsDataset(bytes, vocab, `model ${manifest.idHex.slice(0, 12)} (vocab ${vocab})`)
    try {
      payload = encodeIdsPayload(stream, { vocab })
    } catch (err: any) {
      throw new DatasetError(err.code === 'ERR_DATASET_PAYLOAD_TOO_LARGE' ? DatasetErrorCode.TOO_LARGE : DatasetErrorCode.ID, err.message, { cause: err })
    }
    fields[DatasetField.SEQUENCES] = { kind: 'uint', value: BigInt(stream.offsets.length - 1) }
    fields[DatasetField.TOKENS] = { kind: 'uint', value: BigInt(stream.tokens.length) }
    fields[DatasetField.MODEL] = { kind: 'bytes', value: manifest.id }
  } else {
    const text = parseTextDataset(bytes)
    if (options.model != null) {
      manifest = await manifestOf(store, options.model)
      stream = singleSequenceStream(tokenize(manifest, text))
    }
    payload = bytes
    fields[DatasetField.SEQUENCES] = { kind: 'uint', value: 1n }
    fields[DatasetField.TOKENS] = { kind: 'uint', value: 0n }
  }
  fields[DatasetField.BYTES] = { kind: 'uint', value: BigInt(payload.length) }
  const block = await store.createBlock({
    chain: ChainId.A,
    type: BlockType.Dataset,
    parents: format === DatasetFormat.IDS && manifest != null ? [manifest.id] : [],
    fields,
    payload
  }, signer)
  const header = datasetHeader(block)
  return datasetJson(block, header, stream != null ? datasetWindows(block.id, stream, header) : undefined, manifest)
}

/** addDataset with the source read from `path` (format from the extension when not given). */
export async function addDatasetFromFile (options: Omit<AddDatasetOptions, 'bytes' | 'format'> & { path: string, format?: DatasetFormat }): Promise<DatasetJson> {
  const format = options.format ?? formatForPath(options.path)
  // the cheap checks first: a bad name or option costs no file read
  checkOptions(options.name, format, options.evalPermille ?? DEFAULT_EVAL_PERMILLE, options.splitTokens ?? DEFAULT_SPLIT_TOKENS)
  const bytes = await readDatasetFile(options.path)
  try {
    return await addDataset({ ...options, format, bytes })
  } catch (err) {
    // an error about a line of the source names the file too
    if (err instanceof DatasetError && err.line != null) {
      throw new DatasetError(err.code as DatasetErrorCode, `${options.path}: ${err.message}`, { line: err.line, cause: err })
    }
    throw err
  }
}

/** The whole payload of a dataset block (every chunk hash verified by the store). */
async function readPayload (store: ChainStoreApi, block: StoredBlock): Promise<Uint8Array> {
  if (!block.payloadComplete) {
    throw new DatasetError(DatasetErrorCode.PAYLOAD_MISSING, `the payload of dataset ${toHex(block.id)} is not stored locally yet`)
  }
  const size = Number(block.header.payloadSize)
  const out = new Uint8Array(size)
  let at = 0
  try {
    for await (const chunk of store.readPayload(block.id)) {
      if (at + chunk.byteLength > size) {
        throw new DatasetError(DatasetErrorCode.CORRUPT, 'payload longer than its header says')
      }
      out.set(chunk, at)
      at += chunk.byteLength
    }
  } catch (err: any) {
    throw new DatasetError(DatasetErrorCode.CORRUPT, `cannot read the payload of dataset ${toHex(block.id)}: ${String(err?.message ?? err)}`, { cause: err })
  }
  if (at !== size) {
    throw new DatasetError(DatasetErrorCode.CORRUPT, `the payload of dataset ${toHex(block.id)} is ${at} bytes, its header says ${size}`)
  }
  return out
}

/**
 * A dataset's token stream. ids: the payload decoded, checked against the
 * header's counts and its model's vocabulary (and `model`'s, when another is
 * given). text: the payload tokenized with `model`'s tokenizer (required).
 */
export async function readTokenStream (store: ChainStoreApi, block: StoredBlock, model?: ModelManifest): Promise<TokenStream> {
  const header = datasetHeader(block)
  const idHex = toHex(block.id)
  const bytes = await readPayload(store, block)
  if (header.format === DatasetFormat.TEXT) {
    if (model == null) {
      throw new DatasetError(DatasetErrorCode.MODEL, `dataset ${header.name} is text: name the model whose tokenizer cuts it into tokens`)
    }
    let text: string
    try {
      text = decodeUtf8(bytes)
    } catch (err: any) {
      throw new DatasetError(DatasetErrorCode.CORRUPT, `dataset ${idHex}: ${err.message}`, { cause: err })
    }
    return singleSequenceStream(tokenize(model, text))
  }
  if (header.model == null) {
    throw new DatasetError(DatasetErrorCode.CORRUPT, `ids dataset ${idHex} names no model`)
  }
  const own = model != null && toHex(model.id) === toHex(header.model) ? model : await loadModelManifest(store, header.model)
  let stream: TokenStream
  try {
    stream = decodeIdsPayload(bytes, { vocab: own.qwen3.vocabSize })
  } catch (err: any) {
    if (err instanceof DatasetCodecError) {
      throw new DatasetError(DatasetErrorCode.CORRUPT, `dataset ${idHex}: ${err.message}`, { cause: err })
    }
    throw err
  }
  if (stream.offsets.length - 1 !== header.sequences || stream.tokens.length !== header.tokens) {
    throw new DatasetError(DatasetErrorCode.CORRUPT, `dataset ${idHex}: the payload holds ${stream.offsets.length - 1} sequences and ${stream.tokens.length} tokens, the header says ${header.sequences} and ${header.tokens}`)
  }
  if (model != null && model !== own) {
    const vocab = model.qwen3.vocabSize
    const bad = stream.tokens.findIndex(id => id >= vocab)
    if (bad !== -1) {
      throw new DatasetError(DatasetErrorCode.ID, `dataset ${header.name} holds id ${stream.tokens[bad]}, out of range [0, ${vocab}) of model ${model.idHex}`)
    }
  }
  return stream
}

/** A dataset's windows (the token stream with its split); text needs `model`. */
export async function loadDatasetWindows (store: ChainStoreApi, block: StoredBlock, model?: string | ModelManifest): Promise<DatasetWindows> {
  const manifest = typeof model === 'string' ? await manifestOf(store, model) : model
  const stream = await readTokenStream(store, block, manifest)
  return datasetWindows(block.id, stream, datasetHeader(block))
}

/** The JSON form; `windows` when the token stream is known, `model` the model it was read with. */
export function datasetJson (block: StoredBlock, header: DatasetHeader, windows?: DatasetWindows, model?: ModelManifest): DatasetJson {
  const isIds = header.format === DatasetFormat.IDS
  const modelHex = isIds && header.model != null ? toHex(header.model) : model?.idHex
  return {
    id: toHex(block.id),
    name: header.name,
    format: header.format,
    bytes: header.bytes,
    sequences: header.sequences,
    tokens: isIds ? header.tokens : (windows?.stream.tokens.length ?? null),
    evalPermille: header.evalPermille,
    splitTokens: header.splitTokens,
    trainWindows: windows?.split.trainWindows.length ?? null,
    evalWindows: windows?.split.evalWindows.length ?? null,
    model: modelHex ?? null,
    author: toHex(block.header.author),
    timestamp: Number(block.header.timestamp),
    stored: block.payloadComplete
  }
}

/** One dataset by name or id; windows for ids, and for text when `model` is given. */
export async function showDataset (store: ChainStoreApi, nameOrId: string, model?: string): Promise<DatasetJson> {
  const block = await findDataset(store, nameOrId)
  const header = datasetHeader(block)
  const manifest = model != null ? await manifestOf(store, model) : undefined
  if (header.format === DatasetFormat.TEXT && manifest == null) {
    return datasetJson(block, header)
  }
  return datasetJson(block, header, await loadDatasetWindows(store, block, manifest), manifest)
}

/**
 * Every dataset on chain A, by name then id. Window counts for ids datasets
 * whose payload is stored; text datasets have none without a model. A
 * dataset whose payload cannot be read is listed with `error` set.
 */
export async function listDatasets (store: ChainStoreApi): Promise<DatasetJson[]> {
  const out: DatasetJson[] = []
  for (const block of await datasetBlocks(store)) {
    const header = datasetHeader(block)
    if (header.format !== DatasetFormat.IDS || !block.payloadComplete) {
      out.push(datasetJson(block, header))
      continue
    }
    try {
      out.push(datasetJson(block, header, await loadDatasetWindows(store, block)))
    } catch (err: any) {
      // one unreadable dataset does not hide the others; it is listed with the reason
      out.push({ ...datasetJson(block, header), error: `${String(err?.code ?? 'ERR')}: ${String(err?.message ?? err)}` })
    }
  }
  // names, then ids, compared as code units (the same order everywhere, unlike localeCompare)
  const key = (d: DatasetJson): string => `${d.name}\u0000${d.id}`
  return out.sort((a, b) => key(a) < key(b) ? -1 : 1)
}
