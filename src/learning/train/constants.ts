/** Defaults of `blyd train` (issue 12), with the reason for each. */
export const TRAIN_DEFAULTS = {
  /** AdamW step size: a common LoRA learning rate */
  lr: 1e-3,
  /** sequences per optimizer step */
  batch: 4,
  /** tokens per sequence: the default split window (datasets cut at 128) */
  seq: 128,
  /** LoRA rank: small adapters, a small lowrank delta */
  loraRank: 8,
  /** LoRA alpha = rank x this: scale alpha / r = 1, so the learning rate does not depend on the rank */
  alphaPerRank: 1,
  seed: 1,
  /** 0: eval loss only before and after */
  evalEvery: 0,
  /** eval windows of the dataset measured (the first ones): enough for a stable mean, cheap */
  evalWindows: 16,
  /** warm-up steps (capped at the job's steps) */
  warmup: 10
} as const
