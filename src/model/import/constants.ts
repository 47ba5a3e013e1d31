/** Defaults of checkpoint import and of the chain loader. */

/** `format` of the manifest payload; a reader refuses any other. */
export const MANIFEST_FORMAT = 'blyd/model-manifest/1'

/**
 * Timestamp of every block an import writes. Fixed (not the clock) so the
 * same checkpoint imported by the same node always yields the same block ids.
 */
export const IMPORT_TIMESTAMP = 0n

/**
 * Chunk size of imported blocks, fixed rather than the store's default so
 * block ids depend only on the checkpoint and the author.
 */
export const IMPORT_CHUNK_SIZE = 4 * 1024 * 1024

/**
 * Bytes read from a checkpoint file at a time while streaming a unit. Pieces
 * smaller than a chunk let hashing, reading ahead and chunk-file writes
 * overlap (measured ~2x faster than chunk-sized pieces, bench/import.ts).
 */
export const IMPORT_READ_BYTES = 1024 * 1024

/** Header fields of the blocks an import writes. */
export const ManifestField = {
  NAME: 'name',
  ARCH: 'arch',
  UNITS: 'units'
} as const

export const LayerField = {
  MODEL: 'model',
  UNIT: 'unit',
  KIND: 'kind',
  /** sha-256 of the whole payload, as the manifest lists it */
  SHA256: 'sha256'
} as const

export const QWEN3_ARCH = 'qwen3'

/** Tensors a checkpoint may hold that the unit plan has no place for and that are safely ignored. */
export const IGNORED_TENSOR = /(^|\.)rotary_emb\.inv_freq$/

/** Shortest model id prefix (hex characters) accepted where a model id is expected. */
export const MIN_MODEL_ID_PREFIX = 8
