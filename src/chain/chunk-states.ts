/**
 * The payload chunks of one block as the index holds them. A chunk's `c`
 * key holds the chunk file's length and is written in the same batch as the
 * first header that names it (block-commit.ts), or by putChunk; a chunk
 * counts for a block only at the length that block implies
 * (payloadChunkLength). A chunk stored at another length proves the block's
 * hash list impossible (no chunk has two lengths): ERR_CHUNK_LENGTH.
 */
import { ChainError, ChainErrorCode } from './errors.ts'
import { chunkKey, readU32 } from './keys.ts'
import { payloadChunkLength, toHex } from './validate.ts'
import type { ChainDb } from './index-reads.ts'
import type { BlockHeader, SignedHeader } from './types.ts'

/** A chunk a block names that the index holds at another length than the block implies. */
export interface ChunkConflict {
  index: number
  stored: number
  expected: number
}

/** The chunks of one block as the index holds them (see chunkStates). */
export interface ChunkStates {
  /** indexes of chunks with no `c` key */
  missing: number[]
  /** the first chunk stored at a length this block cannot have, if any */
  conflict?: ChunkConflict
}

/**
 * The chunks `header` names as the index holds them: which have no `c`
 * key yet, and the first stored at a length other than the one `header`
 * implies for it (payloadChunkLength).
 */
export async function chunkStates (db: ChainDb, header: BlockHeader): Promise<ChunkStates> {
  const values = await db.getMany(header.chunkHashes.map(chunkKey))
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

/** ERR_CHUNK_LENGTH: `block` names a chunk the store holds at another length. */
export function chunkLengthError (block: SignedHeader, c: ChunkConflict): ChainError {
  const hash = toHex(block.header.chunkHashes[c.index])
  return new ChainError(ChainErrorCode.CHUNK_LENGTH, `chunk ${c.index} (${hash}) is stored as ${c.stored} bytes, this block says ${c.expected}: no chunk has two lengths, so this block can never be complete`, { blockId: toHex(block.id) })
}
