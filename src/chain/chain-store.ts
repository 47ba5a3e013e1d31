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
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { canonicalParents, decodeBlockHeader, decodeSignedBlockHeader, encodeBlockHeader, encodeSignedBlockHeader } from '../protocols/block-header.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { blockId, sha256, signBlockId } from './block-crypto.ts'
import { ChunkFiles } from './chunk-files.ts'
import { DEFAULT_CHUNK_SIZE, DEFAULT_LIMITS, DEFAULT_ORPHAN_POOL_BYTES, DEFAULT_ORPHAN_POOL_SIZE, DEFAULT_WRITE_CONCURRENCY, HEADER_VERSION } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { FLAG_PAYLOAD_COMPLETE, Prefix, childKey, chunkKey, countKey, decodeRecord, encodeRecord, headerKey, modelUnitKey, orderKey, range, readU32, readU64, tipKey, typeKey, u32, u64, u8 } from './keys.ts'
import { OrphanPool } from './orphan-pool.ts'
import { ChunkWriter, chunkPayload } from './payload-writer.ts'
import { verifyStore } from './store-verify.ts'
import { ChainId } from './types.ts'
import { decodeAndValidate, decodeBlock, layerCoordinates, payloadChunkLength, toHex, validateAgainstParents, validateChunk, validateDecoded } from './validate.ts'
import type { ChainLimits } from './constants.ts'
import type { HeaderRecord } from './keys.ts'
import type { Orphan } from './orphan-pool.ts'
import type { StoreVerifyReport } from './store-verify.ts'
import type { BlockHeader, BlockSigner, BlockType, ChainCounts, ChainStoreApi, DecodedBlock, FieldValue, NewBlock, SignedHeader, StoredBlock } from './types.ts'
import type { KeyObject } from 'node:crypto'

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

export interface GcReport {
  /** chunk files removed (no visible block refers to them) */
  removed: number
  bytes: number
}

export interface VerifyOptions {
  signal?: AbortSignal
  onProgress?(done: number, total: number): void
}

const EMPTY = new Uint8Array(0)
const KEY_CACHE_SIZE = 1024

type Db = ClassicLevel<Uint8Array, Uint8Array>

type CommitResult =
  | { status: 'added' | 'duplicate' }
  | { status: 'orphaned', missing: Set<string> }

/** A chunk a block names that the index holds at another length than the block implies. */
interface ChunkConflict {
  index: number
  stored: number
  expected: number
}

/** The chunks of one block as the index holds them (see ChainStore.chunkStates). */
interface ChunkStates {
  /** indexes of chunks with no `c` key */
  missing: number[]
  /** the first chunk stored at a length this block cannot have, if any */
  conflict?: ChunkConflict
}

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
  private db?: Db
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
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(join(this.path, 'index'), { keyEncoding: 'view', valueEncoding: 'view' })
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
      throw new ChainError(ChainErrorCode.UnknownParent, `cannot create a block on unknown parents ${[...result.missing].join(', ')}`)
    }
    if (result.status === 'added') {
      this.stats.added++
      await this.releaseOrphans(toHex(signed.id))
    }
    const stored = await this.get(signed.id)
    if (stored == null) {
      throw new ChainError(ChainErrorCode.BlockNotFound, 'created block vanished', { blockId: toHex(signed.id) })
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
      throw new ChainError(ChainErrorCode.InvalidArgument, 'addDecoded takes only what this store\'s decodeBlock returned')
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
        throw new ChainError(ChainErrorCode.PayloadSize, `payload is ${payload.length} bytes, the header says ${header.payloadSize}`, { blockId: idHex })
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
        throw new ChainError(ChainErrorCode.UnknownParent, `unknown parents ${[...result.missing].join(', ')}`, { blockId: idHex })
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
      throw new ChainError(ChainErrorCode.BlockNotFound, 'no such block', { blockId: toHex(id) })
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
    await this.exclusive(async () => {
      const batch = db.batch()
      batch.put(chunkKey(hash), u32(bytes.length))
      const raw = await db.get(headerKey(id))
      if (raw != null) {
        const record = decodeRecord(raw)
        if ((record.flags & FLAG_PAYLOAD_COMPLETE) === 0) {
          // complete = every other chunk stored at the length this block implies
          const { missing, conflict } = await this.chunkStates(block.header)
          if (conflict == null && missing.every(i => equalBytes(block.header.chunkHashes[i], hash))) {
            batch.put(headerKey(id), encodeRecord({ ...record, flags: record.flags | FLAG_PAYLOAD_COMPLETE }))
          }
        }
      }
      await batch.write({ sync: this.fsync })
    })
  }

  /**
   * Indexes of the payload chunks of `id` not stored locally yet (what sync
   * should fetch). Throws ERR_CHUNK_LENGTH when a chunk the block names is
   * stored at another length than the block implies: no fetch can complete it.
   */
  async missingChunks (id: Uint8Array): Promise<number[]> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BlockNotFound, 'no such block', { blockId: toHex(id) })
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
    const raw = await this.requireDb().get(headerKey(id))
    if (raw == null) {
      return undefined
    }
    return this.toStored(id, decodeRecord(raw))
  }

  async has (id: Uint8Array): Promise<boolean> {
    return this.requireDb().has(headerKey(id))
  }

  async getEncoded (id: Uint8Array): Promise<Uint8Array | undefined> {
    const raw = await this.requireDb().get(headerKey(id))
    return raw == null ? undefined : decodeRecord(raw).signedHeader.slice()
  }

  async getChunk (id: Uint8Array, index: number): Promise<Uint8Array> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BlockNotFound, 'no such block', { blockId: toHex(id) })
    }
    payloadChunkLength(block.header, index)
    return this.readVerifiedChunk(block, index)
  }

  async * readPayload (id: Uint8Array): AsyncGenerator<Uint8Array> {
    const block = await this.get(id)
    if (block == null) {
      throw new ChainError(ChainErrorCode.BlockNotFound, 'no such block', { blockId: toHex(id) })
    }
    const n = block.header.chunkHashes.length
    if (n === 0) {
      return
    }
    // read one chunk ahead while the consumer handles the current one
    let next = this.readVerifiedChunk(block, 0)
    try {
      for (let i = 0; i < n; i++) {
        const current = await next
        if (i + 1 < n) {
          next = this.readVerifiedChunk(block, i + 1)
        }
        yield current
      }
    } finally {
      next.catch(() => {})
    }
  }

  async children (id: Uint8Array): Promise<Uint8Array[]> {
    const out: Uint8Array[] = []
    for await (const key of this.requireDb().keys(range(Prefix.Child, id))) {
      out.push(new Uint8Array(key.subarray(33)))
    }
    return out
  }

  async tips (chain?: ChainId): Promise<Uint8Array[]> {
    const out: Uint8Array[] = []
    for (const c of chain == null ? [ChainId.A, ChainId.B] : [chain]) {
      for await (const key of this.requireDb().keys(range(Prefix.Tip, u8(c)))) {
        out.push(new Uint8Array(key.subarray(2)))
      }
    }
    return out
  }

  /** every block parents-first: ordered by (height, id), the same on every node holding the same blocks */
  async * topological (chain?: ChainId): AsyncGenerator<StoredBlock> {
    for await (const [key, value] of this.requireDb().iterator(range(Prefix.Order))) {
      if (chain != null && value[0] !== chain) {
        continue
      }
      const block = await this.get(key.subarray(5))
      if (block != null) {
        yield block
      }
    }
  }

  async * byType (type: BlockType): AsyncGenerator<StoredBlock> {
    for await (const key of this.requireDb().keys(range(Prefix.Type, u8(type)))) {
      const block = await this.get(key.subarray(6))
      if (block != null) {
        yield block
      }
    }
  }

  async byModelUnit (modelId: Uint8Array, unit: number): Promise<StoredBlock[]> {
    const out: StoredBlock[] = []
    for await (const key of this.requireDb().keys(range(Prefix.ModelUnit, modelId, u32(unit)))) {
      const block = await this.get(key.subarray(37))
      if (block != null) {
        out.push(block)
      }
    }
    return out
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
    return this.exclusive(async () => {
      const referenced = new Set<string>(this.pool.pinnedChunks())
      for await (const value of db.values(range(Prefix.Header))) {
        const { header } = decodeSignedBlockHeader(decodeRecord(value).signedHeader)
        for (const h of decodeBlockHeader(header).chunkHashes) {
          referenced.add(toHex(h))
        }
      }
      let removed = 0
      let bytes = 0
      for await (const { hex, size } of this.files.list()) {
        if (!referenced.has(hex)) {
          const hash = Uint8Array.from(Buffer.from(hex, 'hex'))
          await db.del(chunkKey(hash))
          await this.files.remove(hash)
          removed++
          bytes += size
        }
      }
      return { removed, bytes }
    })
  }

  private async commitLocked (block: SignedHeader, encoded: Uint8Array, chunksWritten: boolean): Promise<CommitResult> {
    const db = this.requireDb()
    const { id, header } = block
    if (await db.has(headerKey(id))) {
      return { status: 'duplicate' }
    }
    const parentValues = header.parents.length > 0 ? await db.getMany(header.parents.map(headerKey)) : []
    const missing = new Set<string>()
    const parents = new Map<string, SignedHeader>()
    let height = 0
    parentValues.forEach((value, i) => {
      const parentHex = toHex(header.parents[i])
      if (value == null) {
        missing.add(parentHex)
        return
      }
      const record = decodeRecord(value)
      parents.set(parentHex, this.toStored(header.parents[i], record))
      height = Math.max(height, record.height + 1)
    })
    if (missing.size > 0) {
      return { status: 'orphaned', missing }
    }
    validateAgainstParents(block, parents)
    // a chunk already stored counts for this block only at the length this
    // block implies; at another length the block's hash list is impossible
    let complete = header.payloadSize === 0n
    if (!complete) {
      const { missing, conflict } = await this.chunkStates(header)
      if (conflict != null) {
        throw chunkLengthError(block, conflict)
      }
      complete = chunksWritten || missing.length === 0
    }

    const batch = db.batch()
    if (chunksWritten) {
      header.chunkHashes.forEach((hash, i) => batch.put(chunkKey(hash), u32(payloadChunkLength(header, i))))
    }
    batch.put(headerKey(id), encodeRecord({
      flags: complete ? FLAG_PAYLOAD_COMPLETE : 0,
      receivedAt: Date.now(),
      height,
      signedHeader: encoded
    }))
    batch.put(orderKey(height, id), u8(header.chain))
    batch.put(typeKey(header.type, height, id), EMPTY)
    const layer = layerCoordinates(header)
    if (layer != null) {
      batch.put(modelUnitKey(layer.model, layer.unit, id), EMPTY)
    }
    for (const parent of header.parents) {
      batch.put(childKey(parent, id), EMPTY)
      if (parents.get(toHex(parent))?.header.chain === header.chain) {
        batch.del(tipKey(header.chain, parent))
      }
    }
    batch.put(tipKey(header.chain, id), EMPTY)
    const count = (this.chainCounts.get(header.chain) ?? 0) + 1
    batch.put(countKey(header.chain), u64(BigInt(count)))
    await batch.write({ sync: this.fsync })
    this.chainCounts.set(header.chain, count)
    return { status: 'added' }
  }

  /** store the orphans that waited (directly or transitively) for `idHex` */
  private async releaseOrphans (idHex: string): Promise<void> {
    const queue = [idHex]
    while (queue.length > 0) {
      const ready: Orphan[] = this.pool.release(queue.shift() as string)
      for (const orphan of ready) {
        try {
          const result = await this.exclusive(async () => this.commitLocked(orphan.block, orphan.encoded, orphan.chunksWritten))
          if (result.status === 'added') {
            this.stats.added++
            this.stats.orphansAccepted++
            queue.push(orphan.idHex)
          } else if (result.status === 'orphaned') {
            this.pool.add({ ...orphan, missing: result.missing })
          }
        } catch (err) {
          // a rule needing the parents failed: the orphan is dropped, counted, never stored
          this.stats.orphansRejected++
          this.countRejection(err)
        }
      }
    }
  }

  private async readVerifiedChunk (block: StoredBlock, index: number): Promise<Uint8Array> {
    const idHex = toHex(block.id)
    const hash = block.header.chunkHashes[index]
    const bytes = await this.files.read(hash)
    if (bytes == null) {
      throw new ChainError(ChainErrorCode.ChunkMissing, `payload chunk ${index} (${toHex(hash)}) is not stored locally`, { blockId: idHex })
    }
    if (!equalBytes(sha256(bytes), hash)) {
      throw new ChainError(ChainErrorCode.ChunkHash, `payload chunk ${index} (${toHex(hash)}) is corrupt on disk`, { blockId: idHex })
    }
    // the chunk is another block's (same hash): it is not this block's chunk
    const expected = payloadChunkLength(block.header, index)
    if (bytes.length !== expected) {
      throw chunkLengthError(block, { index, stored: bytes.length, expected })
    }
    return bytes
  }

  /**
   * The chunks `header` names as the index holds them: which have no `c`
   * key yet, and the first stored at a length other than the one `header`
   * implies for it (payloadChunkLength). The `c` value is the chunk file's
   * length, written in the same batch as the first header that names it.
   */
  private async chunkStates (header: BlockHeader): Promise<ChunkStates> {
    const values = await this.requireDb().getMany(header.chunkHashes.map(chunkKey))
    const missing: number[] = []
    for (let i = 0; i < values.length; i++) {
      const value = values[i]
      if (value == null) {
        missing.push(i)
        continue
      }
      const expected = payloadChunkLength(header, i)
      const stored = readU32(value)
      if (stored !== expected) {
        return { missing, conflict: { index: i, stored, expected } }
      }
    }
    return { missing }
  }

  private toStored (id: Uint8Array, record: HeaderRecord): StoredBlock {
    const envelope = decodeSignedBlockHeader(record.signedHeader)
    return {
      id: new Uint8Array(id),
      header: decodeBlockHeader(envelope.header),
      headerBytes: envelope.header,
      signature: envelope.signature,
      receivedAt: record.receivedAt,
      payloadComplete: (record.flags & FLAG_PAYLOAD_COMPLETE) !== 0
    }
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
      throw new ChainError(ChainErrorCode.InvalidArgument, `chunk size ${chunkSize} outside ${this.limits.minChunkSize}..${this.limits.maxChunkSize}`)
    }
  }

  private countRejection (err: unknown): void {
    if (err instanceof ChainError) {
      this.stats.rejected[err.code] = (this.stats.rejected[err.code] ?? 0) + 1
    }
  }

  private requireDb (): Db {
    if (this.db == null) {
      throw new ChainError(ChainErrorCode.NotStarted, 'the chain store is not started')
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

/** ERR_CHUNK_LENGTH: `block` names a chunk the store holds at another length. */
function chunkLengthError (block: SignedHeader, c: ChunkConflict): ChainError {
  const hash = toHex(block.header.chunkHashes[c.index])
  return new ChainError(ChainErrorCode.ChunkLength, `chunk ${c.index} (${hash}) is stored as ${c.stored} bytes, this block says ${c.expected}: no chunk has two lengths, so this block can never be complete`, { blockId: toHex(block.id) })
}

export function createChainStore (init: ChainStoreInit): ChainStore {
  return new ChainStore(init)
}
