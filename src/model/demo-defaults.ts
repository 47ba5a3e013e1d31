/**
 * The demo checkpoint's options and defaults, apart from the writer so that
 * the CLI can show them in its help without loading the tokenizer.
 */
export interface DemoCheckpointOptions {
  layers?: number
  hidden?: number
  heads?: number
  kvHeads?: number
  headDim?: number
  intermediate?: number
  /**
   * Default 151936, Qwen3's own vocab_size: the bundled real tokenizer emits
   * ids up to 151668, so with the tokenizer the vocab must cover 151669 ids
   * (the embedding then dominates the size: 151936 x hidden). Only with
   * tokenizer: false may it be smaller.
   */
  vocab?: number
  seed?: number
  dtype?: 'F32' | 'BF16'
  /** default true, as in the small Qwen3 models (halves the file) */
  tieWordEmbeddings?: boolean
  /** copy the real Qwen3 tokenizer.json / tokenizer_config.json (default true) */
  tokenizer?: boolean
  /**
   * Cut the tokenizer to its first `merges` BPE merges (model/tokenizer-prefix.ts:
   * Qwen3's ids below 256 + merges, the special tokens renumbered after them);
   * the vocab then defaults to the prefix's id count. Default: the whole tokenizer.
   */
  merges?: number
}

/** True for the config.json of a demo checkpoint (`"blyd_demo": { "random_weights": true }`). */
export function isDemoConfig (config: Record<string, unknown>): boolean {
  const demo = config.blyd_demo
  return demo != null && typeof demo === 'object' && (demo as Record<string, unknown>).random_weights === true
}

/** Defaults: tiny dims (a ~10 MB bf16 file) so tests stay fast; head_dim deliberately != hidden/heads. */
export const DEMO_DEFAULTS: Required<Omit<DemoCheckpointOptions, 'merges'>> = {
  layers: 2,
  hidden: 32,
  heads: 4,
  kvHeads: 2,
  headDim: 16,
  intermediate: 64,
  vocab: 151936,
  seed: 1,
  dtype: 'BF16',
  tieWordEmbeddings: true,
  tokenizer: true
}
