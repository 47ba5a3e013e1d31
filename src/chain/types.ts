/**
 * Public types of the chain part. The wire encoding of a header lives in
 * src/protocols/block-header.ts; this file only says what a block is.
 */

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

declare const decodedBrand: unique symbol

/**
 * A signed header as validate.ts `decodeBlock` returns it, decoded and hashed
 * once: its encoding, size and id are checked, its other stateless rules not
 * yet (`validateDecoded`). The brand keeps other objects out where one is
 * asked for (ChainStoreApi.addDecoded).
 */
export type DecodedBlock = SignedHeader & { readonly [decodedBrand]: true }

/** Hex-encoded block id, the form ids take in JSON, the CLI and logs. */
export type BlockIdHex = string

/** What the store keeps per block besides the signed header. */
export interface StoredBlock extends SignedHeader {
  /** ms since epoch when this node stored it */
  receivedAt: number
  /** true when every payload chunk is present locally (headers can arrive before payloads) */
  payloadComplete: boolean
}

/** What a block needs to be built and signed (see ChainStore.createBlock). */
export interface NewBlock {
  chain: ChainId
  type: BlockType
  parents?: Uint8Array[]
  fields?: Map<string, FieldValue> | Record<string, FieldValue>
  /** the payload, whole or streamed; streamed payloads are never held in memory at once */
  payload?: Uint8Array | AsyncIterable<Uint8Array>
  /** override the default chunk size */
  chunkSize?: number
  /** override the clock (tests, deterministic imports) */
  timestamp?: bigint
}

/** One problem `verify()` found. */
export interface VerifyIssue {
  id?: BlockIdHex
  code: string
  message: string
}

export interface VerifyReport {
  blocks: number
  chunks: number
  bytes: number
  issues: VerifyIssue[]
  ok: boolean
}

export interface ChainCounts {
  A: number
  B: number
  total: number
  orphans: number
}

/**
 * The signer a node uses for the blocks it authors: its identity key.
 * `publicKey` is the raw 32-byte Ed25519 public key.
 */
export interface BlockSigner {
  publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>
}

/**
 * The chain store as the daemon, CLI and model parts use it. Implemented by
 * the class in chain-store.ts (classic-level index + content-addressed chunk files).
 */
export interface ChainStoreApi {
  start(): Promise<void>
  stop(): Promise<void>

  /** build, sign and store a block authored by `signer`; returns the stored block */
  createBlock(block: NewBlock, signer: BlockSigner): Promise<StoredBlock>
  /**
   * validate and store a block received from elsewhere (headers first; payload
   * chunks may follow via putChunk). Throws a ChainError with the rule's code;
   * unknown parents park it in the orphan pool and return 'orphaned'.
   */
  addBlock(signedHeaderBytes: Uint8Array, payload?: Uint8Array, options?: {
    /** the id the block was requested or announced under: ERR_BLOCK_ID when it differs */
    expectedId?: Uint8Array
  }): Promise<'added' | 'duplicate' | 'orphaned'>
  /**
   * addBlock in two steps, for a caller that must look at the header first
   * (gossip checks the topic's chain) without decoding it twice: decode and
   * hash a private copy (the rules the bytes alone decide; ChainError as
   * addBlock throws it) ...
   */
  decodeBlock(signedHeaderBytes: Uint8Array, options?: { expectedId?: Uint8Array }): DecodedBlock
  /** ... then every other rule and the store, as addBlock; only a block this store's decodeBlock returned is taken */
  addDecoded(block: DecodedBlock, payload?: Uint8Array): Promise<'added' | 'duplicate' | 'orphaned'>
  /** store one payload chunk of a known block after checking its hash */
  putChunk(id: Uint8Array, index: number, bytes: Uint8Array): Promise<void>

  get(id: Uint8Array): Promise<StoredBlock | undefined>
  has(id: Uint8Array): Promise<boolean>
  /** the encoded signed header (what gossip and sync send) */
  getEncoded(id: Uint8Array): Promise<Uint8Array | undefined>
  getChunk(id: Uint8Array, index: number): Promise<Uint8Array>
  /** the whole payload, every chunk hash verified; throws naming the block when missing or corrupt */
  readPayload(id: Uint8Array): AsyncIterable<Uint8Array>
  children(id: Uint8Array): Promise<Uint8Array[]>
  tips(chain?: ChainId): Promise<Uint8Array[]>
  /** all blocks in a topological order (parents before children) */
  topological(chain?: ChainId): AsyncIterable<StoredBlock>
  byType(type: BlockType): AsyncIterable<StoredBlock>
  /** layer blocks of model `modelId` (manifest id) for unit index `unit` */
  byModelUnit(modelId: Uint8Array, unit: number): Promise<StoredBlock[]>
  counts(): Promise<ChainCounts>
  /** re-check every header, signature and chunk hash */
  verify(options?: { signal?: AbortSignal, onProgress?(done: number, total: number): void }): Promise<VerifyReport>
}
