/**
 * What a generation tells whoever watches it (the daemon's metrics) while it
 * runs. Every hook is optional, called synchronously on the generation's
 * path, and must neither throw nor block: it records and returns.
 */
export interface GenerationObserver {
  /**
   * One forward step through a stage, as the generating process timed it:
   * decoder layers [start, end) (the whole model, embedding and head
   * included, for a generation that runs locally; one hop's layers, the
   * round trip to its peer included, through the mesh), `positions` fed
   * in the step, `ms` it took.
   */
  step?(stage: { start: number, end: number }, positions: number, ms: number): void
  /** a stage that failed mid-generation was replaced (failover), for `reason` (timeout, error, ...) */
  failover?(reason: string): void
}
