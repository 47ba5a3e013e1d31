/**
 * Public types of the chain part. The header's wire types (ChainId,
 * BlockType, FieldValue, BlockHeader, SignedHeader) live with their codec in
 * src/protocols/block-header.ts and are re-exported here; this file says
 * what the store keeps and offers.
 */
import type { BlockType, ChainId, FieldValue, SignedHeader } from '../protocols/block-header.ts'

export { BLOCK_TYPE_CHAIN, BlockType, ChainId } from '../protocols/block-header.ts'
export type { BlockHeader, FieldValue, SignedHeader } from '../protocols/block-header.ts'

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
