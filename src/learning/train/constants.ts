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

/**
 * Most trainable elements one optimizer work unit updates (whole tensors;
 * a bigger tensor is a unit alone): AdamW runs ~5 ns an element in plain
 * JS, so a unit of 2^20 elements takes a few ms, well under a layer's
 * forward, and a --full update of a large model does not stall inference.
 */
export const OPTIMIZER_UNIT_ELEMENTS = 1 << 20

/**
 * A training thread's defaults (train-thread.ts): the OS nice value it
 * runs at (19, the lowest priority: a core goes to the node's inference
 * the moment it wants it) and how often the node's busy() is copied to it.
 */
export const TRAIN_THREAD_DEFAULTS = { nice: 19, busyPollMs: 2 } as const
