/**
 * Full consistency check of a chain store: every header's encoding, id,
 * signature and type rules, every index entry, the counts, the tips, and
 * every chunk file's hash. Reports problems (with block ids), never throws
 * on a bad block.
 */
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { blockId, sha256, verifyBlockSignature } from './block-crypto.ts'
import { ChainErrorCode } from './errors.ts'
import { FLAG_PAYLOAD_COMPLETE, Prefix, childKey, chunkKey, countKey, decodeRecord, modelUnitKey, orderKey, range, readU32, readU64, typeKey } from './keys.ts'
import { ChainId } from './types.ts'
import { layerCoordinates, payloadChunkLength, toHex, validateSizes, validateType } from './validate.ts'
import type { ChunkFiles } from './chunk-files.ts'
import type { ChainLimits } from './constants.ts'
import type { BlockHeader, VerifyIssue, VerifyReport } from './types.ts'
import type { ClassicLevel } from 'classic-level'

export interface VerifyContext {
  db: ClassicLevel<Uint8Array, Uint8Array>
  files: ChunkFiles
  limits: ChainLimits
  /** the store's in-memory per-chain counts */
  counts: Map<number, number>
  /** chunk hashes (hex) pooled orphans rely on: not garbage */
  pinned: Set<string>
}

export interface StoreVerifyReport extends VerifyReport {
  /** chunk files no visible block refers to (left by a crash or a rejected block; see gc()) */
  garbageChunks: number
  garbageBytes: number
  /**
   * blocks stored header-only that name a chunk the store holds at another
   * length (a peer's impossible hash list): they can never complete and are
   * never served; not an issue
   */
  unsatisfiableBlocks: number
}

interface BlockInfo {
  chain: number
  height: number
  header?: BlockHeader
}

type Record_ = ReturnType<typeof decodeRecord>

/** One verify run; each check is its own method and appends to `issues`. */
class StoreVerifier {
  private readonly ctx: VerifyContext
  readonly issues: VerifyIssue[]
  readonly blocks: Map<string, BlockInfo>
  private readonly referenced: Set<string>
  private readonly verifiedChunks: Set<string>
  chunks: number
  bytes: number
  unsatisfiable: number

  constructor (ctx: VerifyContext) {
    this.ctx = ctx
    this.issues = []
    this.blocks = new Map()
    this.referenced = new Set()
    this.verifiedChunks = new Set()
    this.chunks = 0
    this.bytes = 0
    this.unsatisfiable = 0
  }

  private issue (id: string | undefined, code: string, message: string): void {
    this.issues.push(id == null ? { code, message } : { id, code, message })
  }

  /** pass 1: every header record, decoded and checked on its own */
  async loadHeaders (): Promise<Array<[Uint8Array, Record_]>> {
    const records: Array<[Uint8Array, Record_]> = []
    for await (const [key, value] of this.ctx.db.iterator(range(Prefix.Header))) {
      records.push([key.slice(1), decodeRecord(value.slice())])
    }
    for (const [id, record] of records) {
      this.checkHeader(id, record)
    }
    return records
  }

  private checkHeader (id: Uint8Array, record: Record_): void {
    const idHex = toHex(id)
    try {
      const envelope = decodeSignedBlockHeader(record.signedHeader)
      const header = decodeBlockHeader(envelope.header)
      this.blocks.set(idHex, { chain: header.chain, height: record.height, header })
      if (!equalBytes(blockId(envelope.header), id)) {
        this.issue(idHex, ChainErrorCode.BLOCK_ID, 'header bytes do not hash to the block id')
      }
      validateSizes(header, this.ctx.limits, idHex)
      validateType(header, idHex)
      if (!verifyBlockSignature(header.author, id, envelope.signature)) {
        this.issue(idHex, ChainErrorCode.BLOCK_SIGNATURE, 'signature does not verify')
      }
    } catch (err: any) {
      this.issue(idHex, err?.code ?? ChainErrorCode.BLOCK_ENCODING, err?.message ?? String(err))
      this.blocks.set(idHex, { chain: 0, height: record.height })
    }
  }

  /** pass 2: a block's index entries and parents */
  async checkIndexes (id: Uint8Array, record: Record_, header: BlockHeader): Promise<void> {
    const { db } = this.ctx
    const idHex = toHex(id)
    const order = await db.get(orderKey(record.height, id))
    if (order?.[0] !== header.chain) {
      this.issue(idHex, ChainErrorCode.INDEX, 'topological order entry missing or wrong')
    }
    if (!(await db.has(typeKey(header.type, record.height, id)))) {
      this.issue(idHex, ChainErrorCode.INDEX, 'by-type entry missing')
    }
    const layer = layerCoordinates(header)
    if (layer != null && !(await db.has(modelUnitKey(layer.model, layer.unit, id)))) {
      this.issue(idHex, ChainErrorCode.INDEX, 'by-(model, unit) entry missing')
    }
    let height = 0
    for (const parent of header.parents) {
      const p = this.blocks.get(toHex(parent))
      if (p == null) {
        this.issue(idHex, ChainErrorCode.UNKNOWN_PARENT, `parent ${toHex(parent)} is not stored`)
        continue
      }
      height = Math.max(height, p.height + 1)
      if (!(await db.has(childKey(parent, id)))) {
        this.issue(idHex, ChainErrorCode.INDEX, `children entry of parent ${toHex(parent)} missing`)
      }
    }
    if (height !== record.height) {
      this.issue(idHex, ChainErrorCode.INDEX, `stored height ${record.height}, expected ${height}`)
    }
  }

  /**
   * pass 2: a block's chunks. An indexed chunk's file must exist, hash right
   * and have the indexed length. A block marked complete must have every
   * chunk indexed at the length its header implies. A block not marked
   * complete that names a chunk stored at another length (another block's
   * chunk: same hash, other length) can never complete: that is counted
   * (unsatisfiableBlocks), not an inconsistency of the store, whatever
   * headers a peer sends.
   */
  async checkChunks (id: Uint8Array, record: Record_, header: BlockHeader): Promise<void> {
    const idHex = toHex(id)
    const markedComplete = (record.flags & FLAG_PAYLOAD_COMPLETE) !== 0
    let missing = false
    let wrongLength = false
    for (let i = 0; i < header.chunkHashes.length; i++) {
      const hash = header.chunkHashes[i]
      const hex = toHex(hash)
      this.referenced.add(hex)
      const indexed = await this.ctx.db.get(chunkKey(hash))
      if (indexed == null) {
        missing = true
        continue
      }
      const stored = readU32(indexed)
      const expected = payloadChunkLength(header, i)
      if (stored !== expected) {
        wrongLength = true
        if (markedComplete) {
          this.issue(idHex, ChainErrorCode.CHUNK_LENGTH, `marked complete but chunk ${i} (${hex}) is stored as ${stored} bytes, the block says ${expected}`)
        }
      }
      if (this.verifiedChunks.has(hex)) {
        continue
      }
      this.verifiedChunks.add(hex)
      const data = await this.ctx.files.read(hash)
      if (data == null) {
        this.issue(idHex, ChainErrorCode.CHUNK_MISSING, `chunk ${i} (${hex}) is indexed but its file is missing`)
      } else if (!equalBytes(sha256(data), hash)) {
        this.issue(idHex, ChainErrorCode.CHUNK_HASH, `chunk ${i} (${hex}) is corrupt on disk`)
      } else if (data.length !== stored) {
        this.issue(idHex, ChainErrorCode.INDEX, `chunk ${i} (${hex}) indexed as ${stored} bytes, its file holds ${data.length}`)
      } else {
        this.chunks++
        this.bytes += data.length
      }
    }
    if (markedComplete && missing) {
      this.issue(idHex, ChainErrorCode.CHUNK_MISSING, 'marked complete but some chunks are not stored')
    }
    if (!markedComplete && wrongLength) {
      this.unsatisfiable++
    }
  }

  /** pass 3: index entries that point at blocks that are not stored */
  async checkDangling (): Promise<void> {
    const entries: Array<[number, (key: Uint8Array) => Uint8Array[], string]> = [
      [Prefix.Order, key => [key.subarray(5)], 'order'],
      [Prefix.Type, key => [key.subarray(6)], 'by-type'],
      [Prefix.ModelUnit, key => [key.subarray(37)], 'by-(model, unit)'],
      [Prefix.Child, key => [key.subarray(1, 33), key.subarray(33)], 'children']
    ]
    for (const [prefix, ids, name] of entries) {
      for await (const key of this.ctx.db.keys(range(prefix))) {
        for (const id of ids(key)) {
          if (!this.blocks.has(toHex(id))) {
            this.issue(toHex(id), ChainErrorCode.INDEX, `${name} entry for a block that is not stored`)
          }
        }
      }
    }
  }

  /** pass 3: per-chain counts and tips (a tip has no child on its own chain) */
  async checkCountsAndTips (): Promise<void> {
    const perChain = new Map<number, number>()
    const hasChildInChain = new Set<string>()
    for (const info of this.blocks.values()) {
      perChain.set(info.chain, (perChain.get(info.chain) ?? 0) + 1)
      for (const parent of info.header?.parents ?? []) {
        if (this.blocks.get(toHex(parent))?.chain === info.chain) {
          hasChildInChain.add(toHex(parent))
        }
      }
    }
    for (const chain of [ChainId.A, ChainId.B]) {
      const raw = await this.ctx.db.get(countKey(chain))
      const stored = raw == null ? 0 : Number(readU64(raw))
      const expected = perChain.get(chain) ?? 0
      if (stored !== expected) {
        this.issue(undefined, ChainErrorCode.INDEX, `count of chain ${chain} is ${stored}, expected ${expected}`)
      }
      const tips = new Set<string>()
      for await (const key of this.ctx.db.keys(range(Prefix.Tip, Uint8Array.of(chain)))) {
        tips.add(toHex(key.subarray(2)))
      }
      for (const [idHex, info] of this.blocks) {
        const shouldBeTip = info.chain === chain && !hasChildInChain.has(idHex)
        if (info.header != null && shouldBeTip !== tips.has(idHex)) {
          this.issue(idHex, ChainErrorCode.INDEX, shouldBeTip ? `missing from the tips of chain ${chain}` : `wrongly a tip of chain ${chain}`)
        }
        tips.delete(idHex)
      }
      for (const idHex of tips) {
        this.issue(idHex, ChainErrorCode.INDEX, `tip of chain ${chain} is not stored`)
      }
    }
  }

  /** chunk files nobody refers to (garbage, not an issue) and chunk keys whose file is gone */
  async checkChunkFiles (): Promise<{ garbageChunks: number, garbageBytes: number }> {
    let garbageChunks = 0
    let garbageBytes = 0
    for await (const { hex, size } of this.ctx.files.list()) {
      if (!this.referenced.has(hex) && !this.ctx.pinned.has(hex)) {
        garbageChunks++
        garbageBytes += size
      }
    }
    for await (const key of this.ctx.db.keys(range(Prefix.Chunk))) {
      const hex = toHex(key.subarray(1))
      if (!this.referenced.has(hex) && !(await this.ctx.files.exists(key.subarray(1)))) {
        this.issue(undefined, ChainErrorCode.CHUNK_MISSING, `chunk ${hex} is indexed but its file is missing`)
      }
    }
    return { garbageChunks, garbageBytes }
  }
}

export async function verifyStore (ctx: VerifyContext, options: { signal?: AbortSignal, onProgress?(done: number, total: number): void } = {}): Promise<StoreVerifyReport> {
  const v = new StoreVerifier(ctx)
  const records = await v.loadHeaders()
  let done = 0
  for (const [id, record] of records) {
    options.signal?.throwIfAborted()
    const header = v.blocks.get(toHex(id))?.header
    if (header != null) {
      await v.checkIndexes(id, record, header)
      await v.checkChunks(id, record, header)
    }
    options.onProgress?.(++done, records.length)
  }
  await v.checkDangling()
  await v.checkCountsAndTips()
  const garbage = await v.checkChunkFiles()
  return { blocks: v.blocks.size, chunks: v.chunks, bytes: v.bytes, issues: v.issues, ok: v.issues.length === 0, ...garbage, unsatisfiableBlocks: v.unsatisfiable }
}
