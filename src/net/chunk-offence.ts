/**
 * What a peer did wrong when the store refused a chunk it served: the bytes
 * of another chunk of the same block, the wrong length, or the right length
 * with the wrong bytes. Run only after a refusal, so a good chunk is hashed
 * once (by the store), never twice.
 */
import { sha256 } from '../chain/block-crypto.ts'
import { payloadChunkLength } from '../chain/validate.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { SyncOffence } from './peer-penalties.ts'
import type { BlockHeader } from '../chain/types.ts'

/**
 * The offence `bytes`, served as chunk `index` of a block with `header`,
 * commits; undefined when they hash to that chunk (then a refusal is the
 * header's fault, e.g. a hash naming a chunk of another length, not the peer's).
 */
export function chunkOffence (header: BlockHeader, index: number, bytes: Uint8Array): SyncOffence | undefined {
  const hash = sha256(bytes)
  if (equalBytes(hash, header.chunkHashes[index])) {
    return undefined
  }
  if (header.chunkHashes.some((h, i) => i !== index && equalBytes(h, hash))) {
    return SyncOffence.ChunkSubstituted
  }
  return bytes.length === payloadChunkLength(header, index) ? SyncOffence.ChunkCorrupt : SyncOffence.ChunkLength
}
