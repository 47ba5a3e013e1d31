/**
 * Full consistency check of a chain store: every header's encoding, id,
 * signature and type rules, every index entry, the counts, the tips, and
 * every chunk file's hash. Reports problems (with block ids), never throws
 * on a bad block.
 */
import { decodeBlockHeader, decodeSignedBlockHeader, equalBytes } from '../protocols/block-header.ts'
import { blockId, sha256, verifyBlockSignature } from './block-crypto.ts'
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
}

interface BlockInfo {
  chain: number
  height: number
  header?: BlockHeader
}

export async function verifyStore (ctx: VerifyContext, options: { signal?: AbortSignal, onProgress?(done: number, total: number): void } = {}): Promise<StoreVerifyReport> {
  const { db, files } = ctx
  const issues: VerifyIssue[] = []
  const blocks = new Map<string, BlockInfo>()
  const referenced = new Set<string>()
  const total = [...ctx.counts.values()].reduce((a, b) => a + b, 0)
  let chunks = 0
  let bytes = 0
  let done = 0

  // pass 1: headers
  const records: Array<[Uint8Array, ReturnType<typeof decodeRecord>]> = []
  for await (const [key, value] of db.iterator(range(Prefix.Header))) {
    records.push([key.slice(1), decodeRecord(value.slice())])
  }
  for (const [id, record] of records) {
    const idHex = toHex(id)
    try {
      const envelope = decodeSignedBlockHeader(record.signedHeader)
      const header = decodeBlockHeader(envelope.header)
      blocks.set(idHex, { chain: header.chain, height: record.height, header })
      if (!equalBytes(blockId(envelope.header), id)) {
        issues.push({ id: idHex, code: 'ERR_BLOCK_ID', message: 'header bytes do not hash to the block id' })
      }
      validateSizes(header, ctx.limits, idHex)
      validateType(header, idHex)
      if (!verifyBlockSignature(header.author, id, envelope.signature)) {
        issues.push({ id: idHex, code: 'ERR_BLOCK_SIGNATURE', message: 'signature does not verify' })
      }
    } catch (err: any) {
      issues.push({ id: idHex, code: err?.code ?? 'ERR_BLOCK_ENCODING', message: err?.message ?? String(err) })
      blocks.set(idHex, { chain: 0, height: record.height })
    }
  }

  // pass 2: per-block index entries, parents and chunks
  const verifiedChunks = new Set<string>()
  for (const [id, record] of records) {
    options.signal?.throwIfAborted()
    const idHex = toHex(id)
    const info = blocks.get(idHex) as BlockInfo
    const header = info.header
    if (header != null) {
      const index = (code: string, message: string): void => { issues.push({ id: idHex, code, message }) }
      const order = await db.get(orderKey(record.height, id))
      if (order?.[0] !== header.chain) {
        index('ERR_INDEX', 'topological order entry missing or wrong')
      }
      if (!(await db.has(typeKey(header.type, record.height, id)))) {
        index('ERR_INDEX', 'by-type entry missing')
      }
      const layer = layerCoordinates(header)
      if (layer != null && !(await db.has(modelUnitKey(layer.model, layer.unit, id)))) {
        index('ERR_INDEX', 'by-(model, unit) entry missing')
      }
      let height = 0
      for (const parent of header.parents) {
        const p = blocks.get(toHex(parent))
        if (p == null) {
          index('ERR_UNKNOWN_PARENT', `parent ${toHex(parent)} is not stored`)
          continue
        }
        height = Math.max(height, p.height + 1)
        if (!(await db.has(childKey(parent, id)))) {
          index('ERR_INDEX', `children entry of parent ${toHex(parent)} missing`)
        }
      }
      if (height !== record.height) {
        index('ERR_INDEX', `stored height ${record.height}, expected ${height}`)
      }
      let complete = true
      for (let i = 0; i < header.chunkHashes.length; i++) {
        const hash = header.chunkHashes[i]
        const hex = toHex(hash)
        referenced.add(hex)
        const indexed = await db.get(chunkKey(hash))
        if (indexed == null) {
          complete = false
          continue
        }
        if (readU32(indexed) !== payloadChunkLength(header, i)) {
          index('ERR_INDEX', `chunk ${i} indexed with a wrong size`)
        }
        if (verifiedChunks.has(hex)) {
          continue
        }
        verifiedChunks.add(hex)
        const data = await files.read(hash)
        if (data == null) {
          index('ERR_CHUNK_MISSING', `chunk ${i} (${hex}) is indexed but its file is missing`)
          continue
        }
        if (!equalBytes(sha256(data), hash)) {
          index('ERR_CHUNK_HASH', `chunk ${i} (${hex}) is corrupt on disk`)
          continue
        }
        chunks++
        bytes += data.length
      }
      if ((record.flags & FLAG_PAYLOAD_COMPLETE) !== 0 && !complete) {
        index('ERR_CHUNK_MISSING', 'marked complete but some chunks are not stored')
      }
    }
    done++
    options.onProgress?.(done, total)
  }

  // pass 3: index entries that point at nothing, tips, counts
  const dangling = async (prefix: number, idOffset: number, name: string): Promise<void> => {
    for await (const key of db.keys(range(prefix))) {
      const ids = prefix === Prefix.Child ? [key.subarray(1, 33), key.subarray(33)] : [key.subarray(idOffset)]
      for (const id of ids) {
        if (!blocks.has(toHex(id))) {
          issues.push({ id: toHex(id), code: 'ERR_INDEX', message: `${name} entry for a block that is not stored` })
        }
      }
    }
  }
  await dangling(Prefix.Order, 5, 'order')
  await dangling(Prefix.Type, 6, 'by-type')
  await dangling(Prefix.ModelUnit, 37, 'by-(model, unit)')
  await dangling(Prefix.Child, 0, 'children')

  const perChain = new Map<number, number>()
  const hasChildInChain = new Set<string>()
  for (const info of blocks.values()) {
    perChain.set(info.chain, (perChain.get(info.chain) ?? 0) + 1)
    for (const parent of info.header?.parents ?? []) {
      if (blocks.get(toHex(parent))?.chain === info.chain) {
        hasChildInChain.add(toHex(parent))
      }
    }
  }
  for (const chain of [ChainId.A, ChainId.B]) {
    const stored = await db.get(countKey(chain))
    const expected = perChain.get(chain) ?? 0
    if ((stored == null ? 0 : Number(readU64(stored))) !== expected) {
      issues.push({ code: 'ERR_INDEX', message: `count of chain ${chain} is ${stored == null ? 0 : readU64(stored)}, expected ${expected}` })
    }
    const tips = new Set<string>()
    for await (const key of db.keys(range(Prefix.Tip, Uint8Array.of(chain)))) {
      tips.add(toHex(key.subarray(2)))
    }
    for (const [idHex, info] of blocks) {
      const shouldBeTip = info.chain === chain && !hasChildInChain.has(idHex)
      if (shouldBeTip !== tips.has(idHex) && info.header != null) {
        issues.push({ id: idHex, code: 'ERR_INDEX', message: shouldBeTip ? `missing from the tips of chain ${chain}` : `wrongly a tip of chain ${chain}` })
      }
      tips.delete(idHex)
    }
    for (const idHex of tips) {
      issues.push({ id: idHex, code: 'ERR_INDEX', message: `tip of chain ${chain} is not stored` })
    }
  }

  // chunk files and chunk keys nobody refers to
  let garbageChunks = 0
  let garbageBytes = 0
  for await (const { hex, size } of files.list()) {
    if (!referenced.has(hex) && !ctx.pinned.has(hex)) {
      garbageChunks++
      garbageBytes += size
    }
  }
  for await (const key of db.keys(range(Prefix.Chunk))) {
    const hex = toHex(key.subarray(1))
    if (!verifiedChunks.has(hex) && !referenced.has(hex) && !(await files.exists(key.subarray(1)))) {
      issues.push({ code: 'ERR_CHUNK_MISSING', message: `chunk ${hex} is indexed but its file is missing` })
    }
  }

  return { blocks: blocks.size, chunks, bytes, issues, ok: issues.length === 0, garbageChunks, garbageBytes }
}
