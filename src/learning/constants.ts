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

/**
 * Receipts a stage's outbox puts in one Receipt block (protocols/ledger.md
 * allows up to 4096): 1024 receipts are a 345 KB payload, one chunk, and a
 * block per 1024 generations served keeps chain A small.
 */
export const DEFAULT_RECEIPT_BATCH = 1024

/**
 * Longest a co-signed receipt waits in the outbox before it is published
 * (ms): a stage is paid within a minute of serving even when it serves few
 * generations.
 */
export const DEFAULT_RECEIPT_FLUSH_MS = 60_000

/**
 * Eval windows `delta propose` measures its claimed losses on (the first
 * ones of the dataset's eval part): information only, so a cap that keeps
 * proposing cheap; the default sampleWindows, so the claim is on as many
 * windows as each validator measures.
 */
export const DEFAULT_CLAIM_WINDOWS = 64

/** The validator service looks for work this often (it also wakes when told a block arrived). */
export const DEFAULT_VALIDATOR_POLL_MS = 2000

/** After a local failure (a payload it could not fetch, an error), a proposal is tried again after this long. */
export const DEFAULT_VALIDATOR_RETRY_MS = 10_000

/**
 * Longest the validator waits before each eval window while inference is
 * busy (generations, served sessions): validation runs below inference,
 * but is never starved for more than this per window.
 */
export const DEFAULT_VALIDATOR_MAX_DEFER_MS = 1000

/** How often the validator re-checks whether inference is still busy while it defers. */
export const VALIDATOR_BUSY_POLL_MS = 25
