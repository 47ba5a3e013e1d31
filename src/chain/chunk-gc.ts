/**
 * Garbage collection of chunk files: a file no visible block names (nor a
 * pooled orphan, whose chunks are written before its parents arrive) is
 * left by a crash between the chunk writes and the commit batch, or by a
 * block refused after its chunks were written. The caller holds the store's
 * lock, so no commit can start naming a chunk while it is being removed;
 * the `c` key goes before the file, so a crash in between leaves an
 * unindexed file (garbage again), never an index entry without its file.
 */
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { Prefix, chunkKey, decodeRecord, range } from './keys.ts'
import { toHex } from './validate.ts'
import type { ChunkFiles } from './chunk-files.ts'
import type { ChainDb } from './index-reads.ts'

export interface GcReport {
  /** chunk files removed (no visible block refers to them) */
  removed: number
  bytes: number
}

/** Deletes the chunk files (and their index keys) no visible block nor `pinned` chunk (hex) refers to. */
export async function collectChunks (db: ChainDb, files: Pick<ChunkFiles, 'list' | 'remove'>, pinned: Iterable<string>): Promise<GcReport> {
  const referenced = new Set<string>(pinned)
  for await (const value of db.values(range(Prefix.Header))) {
    const { header } = decodeSignedBlockHeader(decodeRecord(value).signedHeader)
    for (const h of decodeBlockHeader(header).chunkHashes) {
      referenced.add(toHex(h))
    }
  }
  let removed = 0
  let bytes = 0
  for await (const { hex, size } of files.list()) {
    if (!referenced.has(hex)) {
      const hash = Uint8Array.from(Buffer.from(hex, 'hex'))
      await db.del(chunkKey(hash))
      await files.remove(hash)
      removed++
      bytes += size
    }
  }
  return { removed, bytes }
}
