/**
 * Canonical protobuf codec of block headers (schema: protocols/block.proto).
 *
 * The encoder writes fields in ascending field-number order, minimal varints,
 * proto3 defaults omitted, parents sorted bytewise and unique, typed fields
 * sorted by key and unique. The decoder is strict: it parses, checks lengths,
 * re-encodes and rejects anything that is not byte-identical, so the block id
 * (sha-256 of the header bytes) is unique per header.
 *
 * The header's types (ChainId, BlockType, FieldValue, BlockHeader,
 * SignedHeader) and wire constants live here; src/chain re-exports them.
 */
import { ChainError, ChainErrorCode } from './chain-errors.ts'
import { PbReader, PbWriter, WireError, WireType, equalBytes, signedEnvelopeCodec } from './pb-wire.ts'

/** Header format version written and accepted. */
export const HEADER_VERSION = 1

/** Domain separation prefix of the signing message: utf8(prefix) || id. */
export const SIGNING_DOMAIN = 'bly/block/v1'

/** Ed25519 public keys and block ids are 32 bytes; signatures 64. */
export const ID_LENGTH = 32
export const PUBLIC_KEY_LENGTH = 32
export const SIGNATURE_LENGTH = 64

/** The two chains of DESIGN.md: A carries meta blocks, B parameter blocks. */
export const ChainId = {
  A: 1,
  B: 2
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ChainId = typeof ChainId[keyof typeof ChainId]

/** Block types; each belongs to exactly one chain (see BLOCK_TYPE_CHAIN). */
export const BlockType = {
  /** model manifest: config, tokenizer, chat template, layer plan (chain A) */
  ModelManifest: 1,
  /** free-form signed note, e.g. a node's announcement of itself (chain A) */
  Note: 2,
  /** a corpus, UTF-8 text or token ids, with its train/eval split (chain A; protocols/dataset.md) */
  Dataset: 3,
  /** a set of Delta blocks proposed against a version, judged by the validators (chain A; protocols/learning-blocks.md) */
  Proposal: 4,
  /** a validator's measurement and verdict of a proposal (chain A) */
  Attestation: 5,
  /** a governance change (validator add/remove, params) proposed against a governance state (chain A) */
  Motion: 6,
  /** a validator's signature of a motion (chain A) */
  Vote: 7,
  /** a model's genesis parameters, by the manifest's author (chain A) */
  Params: 8,
  /** a batch of inference receipts co-signed by clients and the block's author, a stage (chain A; protocols/ledger.md) */
  Receipt: 9,
  /** a move of BLY from its author to another key on a model's ledger (chain A; protocols/ledger.md) */
  Transfer: 10,
  /** one unit of a model's weights: embedding, a decoder layer, or final norm + head (chain B) */
  Layer: 16,
  /** one unit's weight difference against a version (chain B; protocols/learning-blocks.md) */
  Delta: 17
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type BlockType = typeof BlockType[keyof typeof BlockType]

export const BLOCK_TYPE_CHAIN: Record<BlockType, ChainId> = {
  [BlockType.ModelManifest]: ChainId.A,
  [BlockType.Note]: ChainId.A,
  [BlockType.Dataset]: ChainId.A,
  [BlockType.Proposal]: ChainId.A,
  [BlockType.Attestation]: ChainId.A,
  [BlockType.Motion]: ChainId.A,
  [BlockType.Vote]: ChainId.A,
  [BlockType.Params]: ChainId.A,
  [BlockType.Receipt]: ChainId.A,
  [BlockType.Transfer]: ChainId.A,
  [BlockType.Layer]: ChainId.B,
  [BlockType.Delta]: ChainId.B
}

/** A typed header field value. Never floats: integers are bigint-safe uint64/int64. */
export type FieldValue =
  | { kind: 'string', value: string }
  | { kind: 'uint', value: bigint }
  | { kind: 'int', value: bigint }
  | { kind: 'bytes', value: Uint8Array }

/** The unsigned header: everything the block id (sha-256 of its encoding) covers. */
export interface BlockHeader {
  /** header format version, currently 1 */
  version: number
  chain: ChainId
  type: BlockType
  /** DAG parents, 32-byte block ids, sorted ascending (bytewise), no duplicates */
  parents: Uint8Array[]
  /** author's Ed25519 public key (32 bytes) — the same key as its libp2p PeerId */
  author: Uint8Array
  /** milliseconds since the Unix epoch */
  timestamp: bigint
  /** typed fields, keys sorted ascending, unique */
  fields: Map<string, FieldValue>
  /** total payload bytes (0 = no payload) */
  payloadSize: bigint
  /** bytes per chunk (every chunk is this size except the last); 0 when no payload */
  chunkSize: number
  /** sha-256 of each payload chunk, in order */
  chunkHashes: Uint8Array[]
}

/** A header with its id and signature, as stored and gossiped. */
export interface SignedHeader {
  /** sha-256 of the canonical header encoding */
  id: Uint8Array
  header: BlockHeader
  /** the exact canonical header bytes the id was computed over */
  headerBytes: Uint8Array
  /** Ed25519 signature by header.author over the signing message of `id` */
  signature: Uint8Array
}

const HASH_LENGTH = ID_LENGTH
const KEY_LENGTH = PUBLIC_KEY_LENGTH

const F = {
  version: 1,
  chain: 2,
  type: 3,
  parents: 4,
  author: 5,
  timestamp: 6,
  fields: 7,
  payloadSize: 8,
  chunkSize: 9,
  chunkHashes: 10
} as const

const FV = {
  key: 1,
  string: 2,
  uint: 3,
  sint: 4,
  bytes: 5
} as const

const UINT64_MAX = (1n << 64n) - 1n
const utf8Encoder = new TextEncoder()

function encodingError (message: string, cause?: unknown): ChainError {
  return new ChainError(ChainErrorCode.BLOCK_ENCODING, message, cause != null ? { cause } : undefined)
}

/** bytewise comparison of two byte arrays (-1, 0, 1) */
export function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return a[i] < b[i] ? -1 : 1
    }
  }
  if (a.length === b.length) {
    return 0
  }
  return a.length < b.length ? -1 : 1
}

/** the parents in canonical order; throws on a duplicate or a wrong length */
export function canonicalParents (parents: Uint8Array[]): Uint8Array[] {
  const sorted = [...parents].sort(compareBytes)
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i].length !== HASH_LENGTH) {
      throw encodingError(`parent ${i} is ${sorted[i].length} bytes, expected ${HASH_LENGTH}`)
    }
    if (i > 0 && compareBytes(sorted[i - 1], sorted[i]) === 0) {
      throw encodingError('duplicate parent')
    }
  }
  return sorted
}

/** a JS string comparison by UTF-8 bytes (what the canonical key order is) */
function compareKeys (a: string, b: string): number {
  return compareBytes(utf8Encoder.encode(a), utf8Encoder.encode(b))
}

function writeField (w: PbWriter, key: string, value: FieldValue): void {
  if (key.length === 0) {
    throw encodingError('empty field key')
  }
  const inner = new PbWriter(64)
  inner.tag(FV.key, WireType.LengthDelimited).bytes(utf8Encoder.encode(key))
  switch (value.kind) {
    case 'string':
      inner.tag(FV.string, WireType.LengthDelimited).bytes(utf8Encoder.encode(value.value))
      break
    case 'uint':
      if (typeof value.value !== 'bigint' || value.value < 0n || value.value > UINT64_MAX) {
        throw encodingError(`field ${key}: uint out of range`)
      }
      inner.tag(FV.uint, WireType.Varint).uint64(value.value)
      break
    case 'int':
      if (typeof value.value !== 'bigint' || value.value < -(1n << 63n) || value.value >= (1n << 63n)) {
        throw encodingError(`field ${key}: int out of range`)
      }
      inner.tag(FV.sint, WireType.Varint).sint64(value.value)
      break
    case 'bytes':
      if (!(value.value instanceof Uint8Array)) {
        throw encodingError(`field ${key}: bytes value is not a Uint8Array`)
      }
      inner.tag(FV.bytes, WireType.LengthDelimited).bytes(value.value)
      break
    default:
      throw encodingError(`field ${key}: unknown value kind`)
  }
  w.tag(F.fields, WireType.LengthDelimited).bytes(inner.finish())
}

/** The canonical encoding of `header`. Throws ERR_BLOCK_ENCODING when it cannot be encoded canonically. */
export function encodeBlockHeader (header: BlockHeader): Uint8Array {
  try {
    const w = new PbWriter(256 + header.chunkHashes.length * 34 + header.parents.length * 34)
    if (header.version !== HEADER_VERSION) {
      throw encodingError(`unsupported header version ${header.version}`)
    }
    w.tag(F.version, WireType.Varint).uint32(header.version)
    if ((header.chain as number) !== 0) {
      w.tag(F.chain, WireType.Varint).uint32(header.chain)
    }
    if ((header.type as number) !== 0) {
      w.tag(F.type, WireType.Varint).uint32(header.type)
    }
    for (const p of canonicalParents(header.parents)) {
      w.tag(F.parents, WireType.LengthDelimited).bytes(p)
    }
    if (header.author.length !== KEY_LENGTH) {
      throw encodingError(`author key is ${header.author.length} bytes, expected ${KEY_LENGTH}`)
    }
    w.tag(F.author, WireType.LengthDelimited).bytes(header.author)
    if (header.timestamp !== 0n) {
      w.tag(F.timestamp, WireType.Varint).uint64(header.timestamp)
    }
    const keys = [...header.fields.keys()].sort(compareKeys)
    for (const key of keys) {
      writeField(w, key, header.fields.get(key) as FieldValue)
    }
    if (header.payloadSize !== 0n) {
      w.tag(F.payloadSize, WireType.Varint).uint64(header.payloadSize)
    }
    if (header.chunkSize !== 0) {
      w.tag(F.chunkSize, WireType.Varint).uint32(header.chunkSize)
    }
    for (const h of header.chunkHashes) {
      if (h.length !== HASH_LENGTH) {
        throw encodingError(`chunk hash is ${h.length} bytes, expected ${HASH_LENGTH}`)
      }
      w.tag(F.chunkHashes, WireType.LengthDelimited).bytes(h)
    }
    return w.finish()
  } catch (err) {
    if (err instanceof ChainError) {
      throw err
    }
    throw encodingError(`cannot encode header: ${(err as Error).message}`, err)
  }
}

function expectWireType (field: number, actual: number, expected: WireType): void {
  if (actual !== expected) {
    throw encodingError(`field ${field} has wire type ${actual}, expected ${expected}`)
  }
}

function decodeUtf8 (bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch (err) {
    throw encodingError(`${what} is not valid UTF-8`, err)
  }
}

function readField (bytes: Uint8Array): [string, FieldValue] {
  const r = new PbReader(bytes)
  let key: string | undefined
  let value: FieldValue | undefined
  while (!r.done()) {
    const [field, wt] = r.tag()
    if (field !== FV.key && value != null) {
      throw encodingError('typed field carries more than one value')
    }
    switch (field) {
      case FV.key:
        expectWireType(field, wt, WireType.LengthDelimited)
        key = decodeUtf8(r.bytes(), 'field key')
        break
      case FV.string:
        expectWireType(field, wt, WireType.LengthDelimited)
        value = { kind: 'string', value: decodeUtf8(r.bytes(), 'string field') }
        break
      case FV.uint:
        expectWireType(field, wt, WireType.Varint)
        value = { kind: 'uint', value: r.uint64() }
        break
      case FV.sint:
        expectWireType(field, wt, WireType.Varint)
        value = { kind: 'int', value: r.sint64() }
        break
      case FV.bytes:
        expectWireType(field, wt, WireType.LengthDelimited)
        value = { kind: 'bytes', value: r.bytes() }
        break
      default:
        throw encodingError(`unknown typed-field member ${field}`)
    }
  }
  if (key == null || key.length === 0) {
    throw encodingError('typed field without a key')
  }
  if (value == null) {
    throw encodingError(`typed field ${key} without a value`)
  }
  return [key, value]
}

/**
 * Strictly decode canonical header bytes. Throws ERR_BLOCK_ENCODING on
 * malformed input, unknown fields, wrong lengths, or any non-canonical form.
 */
export function decodeBlockHeader (bytes: Uint8Array): BlockHeader {
  const header: BlockHeader = {
    version: 0,
    chain: 0 as ChainId,
    type: 0 as BlockType,
    parents: [],
    author: new Uint8Array(0),
    timestamp: 0n,
    fields: new Map(),
    payloadSize: 0n,
    chunkSize: 0,
    chunkHashes: []
  }
  try {
    const r = new PbReader(bytes)
    while (!r.done()) {
      const [field, wt] = r.tag()
      switch (field) {
        case F.version:
          expectWireType(field, wt, WireType.Varint)
          header.version = r.uint32()
          break
        case F.chain:
          expectWireType(field, wt, WireType.Varint)
          header.chain = r.uint32() as ChainId
          break
        case F.type:
          expectWireType(field, wt, WireType.Varint)
          header.type = r.uint32() as BlockType
          break
        case F.parents:
          expectWireType(field, wt, WireType.LengthDelimited)
          header.parents.push(r.bytes())
          break
        case F.author:
          expectWireType(field, wt, WireType.LengthDelimited)
          header.author = r.bytes()
          break
        case F.timestamp:
          expectWireType(field, wt, WireType.Varint)
          header.timestamp = r.uint64()
          break
        case F.fields: {
          expectWireType(field, wt, WireType.LengthDelimited)
          const [key, value] = readField(r.bytes())
          if (header.fields.has(key)) {
            throw encodingError(`duplicate typed field ${key}`)
          }
          header.fields.set(key, value)
          break
        }
        case F.payloadSize:
          expectWireType(field, wt, WireType.Varint)
          header.payloadSize = r.uint64()
          break
        case F.chunkSize:
          expectWireType(field, wt, WireType.Varint)
          header.chunkSize = r.uint32()
          break
        case F.chunkHashes:
          expectWireType(field, wt, WireType.LengthDelimited)
          header.chunkHashes.push(r.bytes())
          break
        default:
          throw encodingError(`unknown header field ${field}`)
      }
    }
  } catch (err) {
    if (err instanceof WireError) {
      throw encodingError(`malformed header: ${err.message}`, err)
    }
    throw err
  }
  if (header.version !== HEADER_VERSION) {
    throw encodingError(`unsupported header version ${header.version}`)
  }
  const again = encodeBlockHeader(header)
  if (!equalBytes(again, bytes)) {
    throw encodingError('header encoding is not canonical')
  }
  return header
}

/** The signed envelope gossip, sync and the store carry. */
export interface SignedBlockHeaderMessage {
  header: Uint8Array
  signature: Uint8Array
}

const signedHeaderCodec = signedEnvelopeCodec('header', SIGNATURE_LENGTH, encodingError)

export function encodeSignedBlockHeader (msg: SignedBlockHeaderMessage): Uint8Array {
  return signedHeaderCodec.encode(msg)
}

/** Strictly decode a signed envelope (canonical, both fields present, 64-byte signature). */
export function decodeSignedBlockHeader (bytes: Uint8Array): SignedBlockHeaderMessage {
  return signedHeaderCodec.decode(bytes)
}
