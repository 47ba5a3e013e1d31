/** Tokens per window when `data add` is not told otherwise (the design's default). */
export const DEFAULT_SPLIT_TOKENS = 128

/** Eval windows per thousand when `data add` is not told otherwise: 10%. */
export const DEFAULT_EVAL_PERMILLE = 100

/**
 * Datasets whose eval window lists the fold's window cache keeps (per
 * dataset, and per model for text datasets). A list is 4 bytes per eval
 * window, so 64 entries of a 256 MiB text dataset's ~7 million windows at
 * 10% eval stay under 200 MB; typical datasets take kilobytes.
 */
export const DEFAULT_EVAL_WINDOWS_CACHE_ENTRIES = 64
