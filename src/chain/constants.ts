/** The header's wire constants live with its codec. */
export { HEADER_VERSION, ID_LENGTH, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH, SIGNING_DOMAIN } from '../protocols/block-header.ts'

/** Largest canonical header encoding accepted (bytes). */
export const MAX_HEADER_BYTES = 256 * 1024

/** Largest signed envelope accepted: header + 64-byte signature + framing. */
export const MAX_SIGNED_HEADER_BYTES = MAX_HEADER_BYTES + 128

/** Largest payload a block may declare (8 GiB). */
export const MAX_PAYLOAD_SIZE = 8n * 1024n * 1024n * 1024n

/** Default bytes per payload chunk (4 MiB). */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024

/** Largest chunk size a block may declare (16 MiB). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024

/** Smallest chunk size a block may declare (keeps chunk lists short). */
export const MIN_CHUNK_SIZE = 1024

/** Most DAG parents per block. */
export const MAX_PARENTS = 64

/** Most typed fields per header. */
export const MAX_FIELDS = 256

/** Orphan pool bounds: entries and total bytes held (FIFO eviction past either). */
export const DEFAULT_ORPHAN_POOL_SIZE = 256
export const DEFAULT_ORPHAN_POOL_BYTES = 256 * 1024 * 1024

/**
 * Chunk files written concurrently while a payload streams in. Each write
 * holds its chunk's bytes (views of the source's pieces, not copies) until
 * its fdatasync returns, so memory in flight is at most this many chunks.
 * bench/chain on 2 cores: 2 → ~620 MiB/s, 4 → ~700, 8 → ~770, 16 → ~830-890
 * (fsync latency, not CPU, is what more writes in flight hide).
 */
export const DEFAULT_WRITE_CONCURRENCY = 16

export interface ChainLimits {
  maxHeaderBytes: number
  maxPayloadSize: bigint
  maxChunkSize: number
  minChunkSize: number
  maxParents: number
  maxFields: number
}

export const DEFAULT_LIMITS: ChainLimits = Object.freeze({
  maxHeaderBytes: MAX_HEADER_BYTES,
  maxPayloadSize: MAX_PAYLOAD_SIZE,
  maxChunkSize: MAX_CHUNK_SIZE,
  minChunkSize: MIN_CHUNK_SIZE,
  maxParents: MAX_PARENTS,
  maxFields: MAX_FIELDS
})
