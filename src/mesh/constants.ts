/**
 * Defaults of the mesh part (serving a span, routing generations through
 * peers). Factories fill missing `...Init` options from here.
 */

/** Span server defaults. */
export const SPAN_SERVER_DEFAULTS = {
  /** how often the span server looks for the manifest and layer blocks it still waits for */
  pollMs: 250,
  /** after this long with no live span to learn from, `--layers auto` decides on what it knows */
  autoSettleMs: 3_000,
  /** `--layers auto`: re-plan this often (0 = never) */
  replanMs: 30_000,
  /**
   * after a move or a version switch, the old stage finishes its open
   * sessions for at most this long, then stops and its weights are freed
   * (the rest fail over, to holders of their version): the time two copies
   * of the span's weights may coexist
   */
  drainMs: 30_000,
  /** how often the span server reads the model's live weights version (the fold is cached while no block arrives) */
  versionPollMs: 1_000
} as const

/** Mesh generation defaults. */
export const MESH_GENERATE_DEFAULTS = {
  /** how long a generation waits for missing client units (embedding, head) or the manifest to arrive */
  fetchTimeoutMs: 60_000,
  /**
   * longest session length a generation asks the stages for; a longer one asks
   * for the stage's default (STAGE_SERVER_DEFAULTS.defaultMaxLength, also the most a stage grants)
   */
  maxSessionLength: 4096
} as const

/** Mesh routing defaults (mesh-route.ts). */
export const MESH_ROUTE_DEFAULTS = {
  /**
   * added to every hop's RTT: a ping leaves out a hop's frame encoding,
   * stream writes and decoding
   */
  hopOverheadMs: 1
} as const
