/**
 * Making a block visible: ONE atomic LevelDB batch writes the header record
 * and every index entry (order, type, model unit, child, tips, the chain's
 * count, and the `c` keys of chunks this block brought), fsynced when the
 * store fsyncs. A block is visible iff its header key exists, so a crash
 * leaves it either wholly indexed or absent. Its chunks must be durable
 * before (their files written and synced by the caller). Callers hold the
 * store's lock: a commit reads parents, tips and counts and writes them
 * back, and the in-memory per-chain count is updated only after the batch
 * is written.
 *
 * A block is stored payload-complete only when every chunk it names is
 * indexed at the length its payload_size and chunk_size imply, whether it
 * brought the chunk or another block did; a chunk indexed at another length
 * refuses the block with ERR_CHUNK_LENGTH. A chunk that arrives on its own
 * (commitChunk) is indexed in one batch with the FLAG_PAYLOAD_COMPLETE of
 * the block it completes.
 */
import { equalBytes } from '../protocols/pb-wire.ts'
import { chunkLengthError, chunkStates } from './chunk-states.ts'
import { storedBlock } from './index-reads.ts'
import { FLAG_PAYLOAD_COMPLETE, childKey, chunkKey, countKey, decodeRecord, encodeRecord, headerKey, modelUnitKey, orderKey, tipKey, typeKey, u32, u64, u8 } from './keys.ts'
import { layerCoordinates, payloadChunkLength, toHex, validateAgainstParents } from './validate.ts'
import type { ChainDb } from './index-reads.ts'
import type { SignedHeader, StoredBlock } from './types.ts'

const EMPTY = new Uint8Array(0)

export type CommitResult =
  | { status: 'added' | 'duplicate' }
  | { status: 'orphaned', missing: Set<string> }

export interface CommitContext {
  db: ChainDb
  /** write the batch with sync */
  fsync: boolean
  /** blocks per chain; updated once the batch is written */
  chainCounts: Map<number, number>
}

/**
 * Stores `block` (its signed bytes `encoded`) unless it is already stored
 * (duplicate) or a parent is unknown (orphaned, nothing written). Checks
 * the rules that need the parents first. `chunksWritten`: this block's
 * chunk files were written and synced, index them in the same batch.
 */
export async function commitBlock (ctx: CommitContext, block: SignedHeader, encoded: Uint8Array, chunksWritten: boolean): Promise<CommitResult> {
  const { db } = ctx
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
    parents.set(parentHex, storedBlock(header.parents[i], record))
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
    const { missing, conflict } = await chunkStates(db, header)
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
  const count = (ctx.chainCounts.get(header.chain) ?? 0) + 1
  batch.put(countKey(header.chain), u64(BigInt(count)))
  await batch.write({ sync: ctx.fsync })
  ctx.chainCounts.set(header.chain, count)
  return { status: 'added' }
}

/**
 * Indexes chunk `hash` (`length` bytes, its file already written and
 * synced) of `block`, and in the same batch flags `block` payload-complete
 * when this was the last chunk it lacked at the length it implies. Callers
 * hold the store's lock.
 */
export async function commitChunk (ctx: CommitContext, block: StoredBlock, hash: Uint8Array, length: number): Promise<void> {
  const { db } = ctx
  const batch = db.batch()
  batch.put(chunkKey(hash), u32(length))
  const raw = await db.get(headerKey(block.id))
  if (raw != null) {
    const record = decodeRecord(raw)
    if ((record.flags & FLAG_PAYLOAD_COMPLETE) === 0) {
      // complete = every other chunk stored at the length this block implies
      const { missing, conflict } = await chunkStates(db, block.header)
      if (conflict == null && missing.every(i => equalBytes(block.header.chunkHashes[i], hash))) {
        batch.put(headerKey(block.id), encodeRecord({ ...record, flags: record.flags | FLAG_PAYLOAD_COMPLETE }))
      }
    }
  }
  await batch.write({ sync: ctx.fsync })
}
