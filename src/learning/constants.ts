/** Tokens per window when `data add` is not told otherwise (the design's default). */
export const DEFAULT_SPLIT_TOKENS = 128

/** Eval windows per thousand when `data add` is not told otherwise: 10%. */
export const DEFAULT_EVAL_PERMILLE = 100
