/**
 * The chain store: signed headers and their indexes in LevelDB
 * (classic-level), payload chunks in content-addressed files (see
 * docs/store.md). Chunks are made durable first; then ONE atomic batch makes
 * the header and every index entry visible. A block is visible iff its
 * header key exists.
 *
 * A block is payload-complete (FLAG_PAYLOAD_COMPLETE) only when every chunk
 * it names is indexed at the length its payload_size and chunk_size imply,
 * whether this block brought the chunk or another block did. A chunk stored
 * at another length proves the block's hash list impossible: commit
 * (addBlock, a released orphan), putChunk and missingChunks refuse such a
 * block with ERR_CHUNK_LENGTH, and reads refuse such a chunk.
 *
 * This class holds the lifecycle, the lock and the entry points; the parts
 * live beside it: the commit batch (block-commit.ts), chunk states
 * (chunk-states.ts), index reads (index-reads.ts), orphan release
 * (orphan-release.ts), verified payload reads (payload-reads.ts), chunk
 * garbage collection (chunk-gc.ts) and the full check (store-verify.ts).
 * Every commit, putChunk's batch, gc and stop run under one lock
 * (exclusive), in call order.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { canonicalParents, encodeBlockHeader, encodeSignedBlockHeader } from '../protocols/block-header.ts'
import { commitBlock, commitChunk } from './block-commit.ts'
import { blockId, sha256, signBlockId } from './block-crypto.ts'
import { ChunkFiles } from './chunk-files.ts'
import { collectChunks } from './chunk-gc.ts'
import { chunkLengthError, chunkStates } from './chunk-states.ts'
import { DEFAULT_CHUNK_SIZE, DEFAULT_LIMITS, DEFAULT_ORPHAN_POOL_BYTES, DEFAULT_ORPHAN_POOL_SIZE, DEFAULT_WRITE_CONCURRENCY, HEADER_VERSION } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { readBlock, readByModelUnit, readByType, readChildren, readEncoded, readTips, readTopological } from './index-reads.ts'
import { chunkKey, countKey, headerKey, readU64 } from './keys.ts'
import { OrphanPool } from './orphan-pool.ts'
import { releaseOrphans } from './orphan-release.ts'
import { readVerifiedChunk, readVerifiedPayload } from './payload-reads.ts'
import { ChunkWriter, chunkPayload } from './payload-writer.ts'
import { verifyStore } from './store-verify.ts'
import { ChainId } from './types.ts'
import { decodeAndValidate, decodeBlock, payloadChunkLength, toHex, validateChunk, validateDecoded } from './validate.ts'
import type { CommitResult } from './block-commit.ts'
import type { GcReport } from './chunk-gc.ts'
import type { ChunkStates } from './chunk-states.ts'
import type { ChainLimits } from './constants.ts'
import type { ChainDb } from './index-reads.ts'
import type { StoreVerifyReport } from './store-verify.ts'
import type { BlockHeader, BlockSigner, BlockType, ChainCounts, ChainStoreApi, DecodedBlock, FieldValue, NewBlock, SignedHeader, StoredBlock } from './types.ts'
import type { KeyObject } from 'node:crypto'

export type { GcReport } from './chunk-gc.ts'

export interface ChainStoreInit {
  /** directory of the store: LevelDB under `path/index`, chunk files under `path/chunks` */
  path: string
  /** default chunk size of blocks this node creates (default 4 MiB) */
  chunkSize?: number
  /** orphan pool bound (entries); 0 disables the pool (unknown parents throw ERR_UNKNOWN_PARENT) */
  orphanPoolSize?: number
  /** orphan pool bound (bytes of signed headers held) */
  orphanPoolBytes?: number
  /** override validation limits */
  limits?: Partial<ChainLimits>
  /** fsync chunk files, their folders and the index batch (default true) */
  fsync?: boolean
  /** chunk files written concurrently while a payload streams in (default 4) */
  writeConcurrency?: number
}

export interface AddBlockOptions {
  /** the id the block was requested/announced under: ERR_BLOCK_ID when it differs */
  expectedId?: Uint8Array
}

export interface ChainMetrics {
  /** blocks stored (created, added, or accepted from the orphan pool) */
  added: number
  duplicates: number
  /** blocks parked because a parent was unknown */
  orphaned: number
  orphansAccepted: number
  orphansEvicted: number
  /** orphans whose parents arrived but that then failed a rule needing the parents */
  orphansRejected: number
  orphanPoolSize: number
  chunksWritten: number
  /** rejections of peer input by error code */
  rejected: Record<string, number>
}

export interface VerifyOptions {
  signal?: AbortSignal
  onProgress?(done: number, total: number): void
}

const KEY_CACHE_SIZE = 1024

function normalizeFields (fields: NewBlock['fields']): Map<string, FieldValue> {
  if (fields == null) {
    return new Map()
  }
  return fields instanceof Map ? new Map(fields) : new Map(Object.entries(fields))
}

/** Detail of the `orphan` event: a block was parked in the orphan pool, waiting for `missing` (hex ids). */
export interface OrphanEventDetail {
  id: Uint8Array
  missing: string[]
}

/**
 * Dispatches `orphan` (CustomEvent<OrphanEventDetail>) after a block is
 * parked in the orphan pool, so the network can fetch its parents
 * (`missingParents()`); listeners run synchronously and must not throw.
 */
export class ChainStore extends EventTarget implements ChainStoreApi {
  readonly path: string
  readonly limits: ChainLimits
  private readonly chunkSize: number
  private readonly fsync: boolean
  private readonly writeConcurrency: number
  private readonly orphanPoolSize: number
  private readonly files: ChunkFiles
  private readonly pool: OrphanPool
  private readonly keyCache: Map<string, KeyObject>
  /** blocks decodeBlock() handed out, with the private copy of the bytes they were decoded from */
  private readonly decoded: WeakMap<DecodedBlock, Uint8Array>
  private readonly chainCounts: Map<number, number>
  private readonly stats: Omit<ChainMetrics, 'orphanPoolSize' | 'orphansEvicted'>
  private db?: ChainDb
  private lock: Promise<void>

  constructor (init: ChainStoreInit) {
    super()
    this.path = init.path
    this.limits = { ...DEFAULT_LIMITS, ...init.limits }
    this.chunkSize = init.chunkSize ?? DEFAULT_CHUNK_SIZE
    this.fsync = init.fsync ?? true
    this.writeConcurrency = Math.max(1, init.writeConcurrency ?? DEFAULT_WRITE_CONCURRENCY)
    this.orphanPoolSize = init.orphanPoolSize ?? DEFAULT_ORPHAN_POOL_SIZE
    this.checkChunkSize(this.chunkSize)
    this.files = new ChunkFiles({ dir: join(init.path, 'chunks'), fsync: this.fsync })
    this.pool = new OrphanPool({ maxEntries: this.orphanPoolSize, maxBytes: init.orphanPoolBytes ?? DEFAULT_ORPHAN_POOL_BYTES })
    this.keyCache = new Map()
    this.decoded = new WeakMap()
    this.chainCounts = new Map()
    this.stats = { added: 0, duplicates: 0, orphaned: 0, orphansAccepted: 0, orphansRejected: 0, chunksWritten: 0, rejected: {} }
    this.lock = Promise.resolve()
  }

  async start (): Promise<void> {
    if (this.db != null) {
      return
    }
    await mkdir(this.path, { recursive: true })
    const db: ChainDb = new ClassicLevel<Uint8Array, Uint8Array>(join(this.path, 'index'), { keyEncoding: 'view', valueEncoding: 'view' })
    await db.open()
    await this.files.start()
    for (const chain of [ChainId.A, ChainId.B]) {
      const v = await db.get(countKey(chain))
      this.chainCounts.set(chain, v == null ? 0 : Number(readU64(v)))
    }
    this.db = db
  }

  async stop (): Promise<void> {
    const db = this.db
    if (db == null) {
      return
    }
    await this.exclusive(async () => {
      this.db = undefined
      await db.close()
    })
    this.pool.clear()
    this.keyCache.clear()
  }

  /** counters for the daemon's status and metrics */
  metrics (): ChainMetrics {
    return {
      ...this.stats,
      rejected: { ...this.stats.rejected },
      orphansEvicted: this.pool.evicted,
      orphanPoolSize: this.pool.size
    }
  }

  async createBlock (block: NewBlock, signer: BlockSigner): Promise<StoredBlock> {
    this.requireDb()
    const chunkSize = block.chunkSize ?? this.chunkSize
    this.checkChunkSize(chunkSize)
    const parents = canonicalParents(block.parents ?? [])
    let payloadSize = 0n
    let chunkHashes: Uint8Array[] = []
    let chunkHexes: string[] = []
    if (block.payload != null) {
      const writer = this.newWriter()
      try {
        const chunked = await chunkPayload(block.payload, chunkSize, this.limits.maxPayloadSize, writer)
        await writer.finish()
        payloadSize = chunked.size
        chunkHashes = chunked.chunkHashes
        chunkHexes = writer.hexes
      } catch (err) {
        await writer.settle()
        throw err
      } finally {
        this.stats.chunksWritten += writer.written
      }
    }
    const header: BlockHeader = {
      version: HEADER_VERSION,
      chain: block.chain,
      type: block.type,
      parents,
      author: signer.publicKey,
      timestamp: block.timestamp ?? BigInt(Date.now()),
      fields: normalizeFields(block.fields),
      payloadSize,
      chunkSize: payloadSize === 0n ? 0 : chunkSize,
      chunkHashes
    }
    const headerBytes = encodeBlockHeader(header)
    const signature = await signBlockId(blockId(headerBytes), signer)
    const encoded = encodeSignedBlockHeader({ header: headerBytes, signature })
    // our own block passes every rule a peer's would
    const signed = decodeAndValidate(encoded, { limits: this.limits, keyCache: this.authorKeys() })
    const result = await this.exclusive(async () => this.commitLocked(signed, encoded, chunkHexes.length > 0))
    if (result.status === 'orphaned') {
      throw new ChainError(ChainErrorCode.UNKNOWN_PARENT, `cannot create a block on unknown parents ${[...result.missing].join(', ')}`)
    }
    if (result.status === 'added') {
      this.stats.added++
      await this.releaseOrphans(toHex(signed.id))
    }
    const stored = await this.get(signed.id)
    if (stored == null) {
      throw new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'created block vanished', { blockId: toHex(signed.id) })
    }
    return stored
  }

  async addBlock (signedHeaderBytes: Uint8Array, payload?: Uint8Array, options?: AddBlockOptions): Promise<'added' | 'duplicate' | 'orphaned'> {
    try {
      return await this.addBlockUncounted(signedHeaderBytes, payload, options)
    } catch (err) {
      this.countRejection(err)
      throw err
    }
  }

  private async addBlockUncounted (signedHeaderBytes: Uint8Array, payload?: Uint8Array, options?: AddBlockOptions): Promise<'added' | 'duplicate' | 'orphaned'> {
    this.requireDb()
    // a private copy, decoded from: the decoded header's parents and hashes
    // are views of it, and an orphan keeps both long after the caller's
    // buffer may be reused (Buffer#slice is a view, not a copy)
    const encoded = new Uint8Array(signedHeaderBytes)
    const block = decodeAndValidate(encoded, { limits: this.limits, expectedId: options?.expectedId, keyCache: this.authorKeys() })
    return this.addValidated(block, encoded, payload)
  }

  /**
   * addBlock in two steps, for a caller that looks at the header before the
   * store takes it (gossip checks the topic's chain) without decoding it
   * again: decodes a private copy of the bytes and hashes it once, checking
   * what the bytes alone decide (sizes, encoding, `expectedId`). Only
   * `addDecoded` of this same store takes the result, and checks every other
   * rule there. The block is frozen: read it, do not change it. Throws a
   * ChainError (counted as addBlock counts it).
   */
  decodeBlock (signedHeaderBytes: Uint8Array, options?: AddBlockOptions): DecodedBlock {
    try {
      // a private copy, as in addBlock
      const encoded = new Uint8Array(signedHeaderBytes)
      const block = decodeBlock(encoded, { limits: this.limits, expectedId: options?.expectedId })
      Object.freeze(block.header.parents)
      Object.freeze(block.header.chunkHashes)
      Object.freeze(block.header)
      Object.freeze(block)
      this.decoded.set(block, encoded)
      return block
    } catch (err) {
      this.countRejection(err)
      throw err
    }
  }

  /**
   * The rest of addBlock for a block this store's `decodeBlock` returned: the
   * stateless rules the decode left (sizes, type, signature), then everything
   * addBlock does (parents, payload, commit or orphan pool). A block from
   * anywhere else is refused (ERR_INVALID_ARGUMENT), so nothing is stored
   * that the store did not decode and validate itself.
   */
  async addDecoded (block: DecodedBlock, payload?: Uint8Array): Promise<'added' | 'duplicate' | 'orphaned'> {
    const encoded = this.decoded.get(block)
    if (encoded == null) {
      // the caller's mistake, not peer input: not counted
      throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, 'addDecoded takes only what this store\'s decodeBlock returned')
    }
    try {
      this.requireDb()
      validateDecoded(block, { limits: this.limits, keyCache: this.authorKeys() })
      return await this.addValidated(block, encoded, payload)
    } catch (err) {
      this.countRejection(err)
      throw err
    }
  }

  /** Store a block that passed every stateless rule, decoded from `encoded` (the store's private copy). */
  private async addValidated (block: SignedHeader, encoded: Uint8Array, payload?: Uint8Array): Promise<'added' | 'duplicate' | 'orphaned'> {
    const db = this.requireDb()
    const idHex = toHex(block.id)
    let chunksWritten = false
    let chunkHexes: string[] = []
    if (payload != null) {
      const { header } = block
      if (BigInt(payload.length) !== header.payloadSize) {
        throw new ChainError(ChainErrorCode.PAYLOAD_SIZE, `payload is ${payload.length} bytes, the header says ${header.payloadSize}`, { blockId: idHex })
      }
      // every chunk is checked before anything is written
      const hashes: Uint8Array[] = []
      for (let i = 0; i < header.chunkHashes.length; i++) {
        const chunk = payload.subarray(i * header.chunkSize, i * header.chunkSize + payloadChunkLength(header, i))
        const hash = sha256(chunk)
        validateChunk(block, i, chunk, hash)
        hashes.push(hash)
      }
      if (!(await db.has(headerKey(block.id))) && hashes.length > 0) {
        const writer = this.newWriter()
        try {
          for (let i = 0; i < hashes.length; i++) {
            await writer.add(hashes[i], payload.subarray(i * header.chunkSize, i * header.chunkSize + payloadChunkLength(header, i)))
          }
          await writer.finish()
        } catch (err) {
          await writer.settle()
          throw err
        } finally {
          this.stats.chunksWritten += writer.written
        }
        chunksWritten = true
        chunkHexes = writer.hexes
      }
    }
    const result = await this.exclusive(async () => this.commitLocked(block, encoded, chunksWritten))
    if (result.status === 'duplicate') {
      this.stats.duplicates++
      return 'duplicate'
    }
    if (result.status === 'orphaned') {
      if (this.orphanPoolSize <= 0) {
        throw new ChainError(ChainErrorCode.UNKNOWN_PARENT, `unknown parents ${[...result.missing].join(', ')}`, { blockId: idHex })
      }
      this.stats.orphaned++
      this.pool.add({ idHex, block, encoded, chunksWritten, chunkHexes, missing: result.missing })
      this.dispatchEvent(new CustomEvent<OrphanEventDetail>('orphan', { detail: { id: block.id, missing: [...result.missing] } }))
      return 'orphaned'
    }
    this.stats.added++
    await this.releaseOrphans(idHex)
    return 'added'
  }

  async putChunk (id: Uint8Array, index: number, bytes: Uint8Array): Promise<void> {
    try {
      await this.putChunkUncounted(id, index, bytes)
    } catch (err) {
      this.countRejection(err)
      throw err
    }
  }

  private async putChunkUncounted (id: Uint8Array, index: number, bytes: Uint8Array): Promise<void> {
    const db = this.requireDb()
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'no such block', { blockId: toHex(id) })
    }
    payloadChunkLength(block.header, index)
    const hash = sha256(bytes)
    validateChunk(block, index, bytes, hash)
    // a block one of whose chunks is stored at another length can never
    // complete: refuse its chunks rather than store them for nothing
    const before = await this.chunkStates(block.header)
    if (before.conflict != null) {
      throw chunkLengthError(block, before.conflict)
    }
    if (!(await db.has(chunkKey(hash)))) {
      const dir = await this.files.write(hash, bytes)
      await this.files.syncDirs([dir])
      this.stats.chunksWritten++
    }
    await this.exclusive(async () => commitChunk({ db, fsync: this.fsync, chainCounts: this.chainCounts }, block, hash, bytes.length))
  }

  /**
   * Indexes of the payload chunks of `id` not stored locally yet (what sync
   * should fetch). Throws ERR_CHUNK_LENGTH when a chunk the block names is
   * stored at another length than the block implies: no fetch can complete it.
   */
  async missingChunks (id: Uint8Array): Promise<number[]> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'no such block', { blockId: toHex(id) })
    }
    if (block.payloadComplete) {
      return []
    }
    const { missing, conflict } = await this.chunkStates(block.header)
    if (conflict != null) {
      throw chunkLengthError(block, conflict)
    }
    return missing
  }

  /** parents orphans are waiting for (that are not orphans themselves): what sync should fetch */
  missingParents (): Uint8Array[] {
    return this.pool.missingParents().map(hex => Uint8Array.from(Buffer.from(hex, 'hex')))
  }

  async get (id: Uint8Array): Promise<StoredBlock | undefined> {
    return readBlock(this.requireDb(), id)
  }

  async has (id: Uint8Array): Promise<boolean> {
    return this.requireDb().has(headerKey(id))
  }

  async getEncoded (id: Uint8Array): Promise<Uint8Array | undefined> {
    return readEncoded(this.requireDb(), id)
  }

  async getChunk (id: Uint8Array, index: number): Promise<Uint8Array> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'no such block', { blockId: toHex(id) })
    }
    payloadChunkLength(block.header, index)
    return readVerifiedChunk(this.files, block, index)
  }

  async * readPayload (id: Uint8Array): AsyncGenerator<Uint8Array> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'no such block', { blockId: toHex(id) })
    }
    yield * readVerifiedPayload(this.files, block)
  }

  async children (id: Uint8Array): Promise<Uint8Array[]> {
    return readChildren(this.requireDb(), id)
  }

  async tips (chain?: ChainId): Promise<Uint8Array[]> {
    return readTips(this.requireDb(), chain)
  }

  /** every block parents-first: ordered by (height, id), the same on every node holding the same blocks */
  async * topological (chain?: ChainId): AsyncGenerator<StoredBlock> {
    yield * readTopological(this.requireDb(), chain)
  }

  async * byType (type: BlockType): AsyncGenerator<StoredBlock> {
    yield * readByType(this.requireDb(), type)
  }

  async byModelUnit (modelId: Uint8Array, unit: number): Promise<StoredBlock[]> {
    return readByModelUnit(this.requireDb(), modelId, unit)
  }

  async counts (): Promise<ChainCounts> {
    this.requireDb()
    const A = this.chainCounts.get(ChainId.A) ?? 0
    const B = this.chainCounts.get(ChainId.B) ?? 0
    return { A, B, total: A + B, orphans: this.pool.size }
  }

  async verify (options: VerifyOptions = {}): Promise<StoreVerifyReport> {
    return verifyStore({
      db: this.requireDb(),
      files: this.files,
      limits: this.limits,
      counts: this.chainCounts,
      pinned: this.pool.pinnedChunks()
    }, options)
  }

  /** delete chunk files no visible block (nor a pooled orphan) refers to, and their index keys */
  async gc (): Promise<GcReport> {
    const db = this.requireDb()
    return this.exclusive(async () => collectChunks(db, this.files, this.pool.pinnedChunks()))
  }

  /** the commit batch (block-commit.ts); callers hold the lock */
  private async commitLocked (block: SignedHeader, encoded: Uint8Array, chunksWritten: boolean): Promise<CommitResult> {
    return commitBlock({ db: this.requireDb(), fsync: this.fsync, chainCounts: this.chainCounts }, block, encoded, chunksWritten)
  }

  /** store the orphans that waited (directly or transitively) for `idHex` */
  private async releaseOrphans (idHex: string): Promise<void> {
    await releaseOrphans(idHex, {
      pool: this.pool,
      commit: async orphan => this.exclusive(async () => this.commitLocked(orphan.block, orphan.encoded, orphan.chunksWritten)),
      onAccepted: () => {
        this.stats.added++
        this.stats.orphansAccepted++
      },
      onRejected: (orphan, err) => {
        this.stats.orphansRejected++
        this.countRejection(err)
      }
    })
  }

  /** the chunks `header` names as the index holds them (chunk-states.ts) */
  private async chunkStates (header: BlockHeader): Promise<ChunkStates> {
    return chunkStates(this.requireDb(), header)
  }

  private newWriter (): ChunkWriter {
    const db = this.requireDb()
    return new ChunkWriter({
      files: this.files,
      concurrency: this.writeConcurrency,
      exists: async hash => db.has(chunkKey(hash))
    })
  }

  private authorKeys (): Map<string, KeyObject> {
    if (this.keyCache.size > KEY_CACHE_SIZE) {
      this.keyCache.clear()
    }
    return this.keyCache
  }

  private checkChunkSize (chunkSize: number): void {
    if (!Number.isInteger(chunkSize) || chunkSize < this.limits.minChunkSize || chunkSize > this.limits.maxChunkSize) {
      throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, `chunk size ${chunkSize} outside ${this.limits.minChunkSize}..${this.limits.maxChunkSize}`)
    }
  }

  private countRejection (err: unknown): void {
    if (err instanceof ChainError) {
      this.stats.rejected[err.code] = (this.stats.rejected[err.code] ?? 0) + 1
    }
  }

  private requireDb (): ChainDb {
    if (this.db == null) {
      throw new ChainError(ChainErrorCode.NOT_STARTED, 'the chain store is not started')
    }
    return this.db
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const previous = this.lock
    let release!: () => void
    this.lock = new Promise<void>(resolve => { release = resolve })
    try {
      await previous
      return await fn()
    } finally {
      release()
    }
  }
}

export function createChainStore (init: ChainStoreInit): ChainStore {
  return new ChainStore(init)
}
