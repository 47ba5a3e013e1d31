/**
 * Reading a block's payload back: every chunk is read from its
 * content-addressed file and verified on the way out (its SHA-256 against
 * the hash the block names, its length against the one the block implies),
 * so a corrupt or foreign file is never served: ERR_CHUNK_MISSING,
 * ERR_CHUNK_HASH or ERR_CHUNK_LENGTH instead.
 */
import { equalBytes } from '../protocols/pb-wire.ts'
import { sha256 } from './block-crypto.ts'
import { chunkLengthError } from './chunk-states.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { payloadChunkLength, toHex } from './validate.ts'
import type { ChunkFiles } from './chunk-files.ts'
import type { StoredBlock } from './types.ts'

/** Chunk `index` of `block`, verified. */
export async function readVerifiedChunk (files: Pick<ChunkFiles, 'read'>, block: StoredBlock, index: number): Promise<Uint8Array> {
  const idHex = toHex(block.id)
  const hash = block.header.chunkHashes[index]
  const bytes = await files.read(hash)
  if (bytes == null) {
    throw new ChainError(ChainErrorCode.CHUNK_MISSING, `payload chunk ${index} (${toHex(hash)}) is not stored locally`, { blockId: idHex })
  }
  if (!equalBytes(sha256(bytes), hash)) {
    throw new ChainError(ChainErrorCode.CHUNK_HASH, `payload chunk ${index} (${toHex(hash)}) is corrupt on disk`, { blockId: idHex })
  }
  // the chunk is another block's (same hash): it is not this block's chunk
  const expected = payloadChunkLength(block.header, index)
  if (bytes.length !== expected) {
    throw chunkLengthError(block, { index, stored: bytes.length, expected })
  }
  return bytes
}

/** Every chunk of `block` in order, verified, reading one chunk ahead while the consumer handles the current one. */
export async function * readVerifiedPayload (files: Pick<ChunkFiles, 'read'>, block: StoredBlock): AsyncGenerator<Uint8Array> {
  const n = block.header.chunkHashes.length
  if (n === 0) {
    return
  }
  let next = readVerifiedChunk(files, block, 0)
  try {
    for (let i = 0; i < n; i++) {
      const current = await next
      if (i + 1 < n) {
        next = readVerifiedChunk(files, block, i + 1)
      }
      yield current
    }
  } finally {
    next.catch(() => {})
  }
}
