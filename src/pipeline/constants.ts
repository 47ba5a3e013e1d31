/**
 * Defaults of the stage server and the pipeline client. Every value can be
 * overridden through StageServerInit / PipelineClientInit; nothing reads
 * these at runtime except the factories that fill in missing options.
 */

/** Stage server defaults. */
export const STAGE_SERVER_DEFAULTS = {
  /** generation sessions served at once; one more gets BUSY at once */
  maxSessions: 16,
  /**
   * positions cached over all sessions, counted over the whole span (the
   * KV-cache memory bound: a session reserves its granted maxLength times the
   * share of the span's layers it runs, rounded up); a session that does not
   * fit gets BUSY
   */
  maxCachePositions: 16 * 4096,
  /** positions granted to an OPEN that asks for 0 (and the most one may ask for) */
  defaultMaxLength: 4096,
  /** a session with no frame for this long loses its KV cache and its stream is closed */
  idleTimeoutMs: 5 * 60_000,
  /** largest frame accepted: 64 MiB holds a 4096-position prefill of hidden 4096 in f32 */
  maxFrameBytes: 64 * 1024 * 1024,
  /**
   * bytes partially received frames may hold over all the stage's streams
   * and direct channels together (at least maxFrameBytes). A frame's buffer
   * is allocated at its declared length when its length prefix arrives, and
   * counts from the first read it outlives until it completes or its stream
   * ends; a frame that would take the total past this gets ERROR OVERLOADED
   * and its stream is aborted. 256 MiB = four frames of the largest size in
   * flight at once; whole frames waiting to be computed are bounded apart
   * (maxQueuedSteps per session).
   */
  maxPartialFrameBytes: 256 * 1024 * 1024,
  /** steps one session may have queued; more is a protocol violation (ERROR + close) */
  maxQueuedSteps: 8,
  /** inbound streams one connection may hold on the protocol */
  maxInboundStreams: 64,
  /** a stream that sends nothing decodable for this long after opening is dropped */
  openTimeoutMs: 10_000,
  /**
   * anti-starvation: a queued step gains one priority level per this many ms
   * it waits, so a batch step waits at most this long behind a stream of
   * interactive ones
   */
  priorityAgingMs: 2_000,
  /**
   * admission by priority: background sessions may fill half of the sessions
   * and cache positions, batch three quarters, interactive all of them, so a
   * stage busy with bulk work still has room for a person waiting
   */
  admitShare: [0.5, 0.75, 1] as readonly number[]
} as const

/** Pipeline client defaults. */
export const PIPELINE_CLIENT_DEFAULTS = {
  /** dial + OPEN handshake per stage */
  openTimeoutMs: 10_000,
  /** direct channel offer + TLS setup; past it the stage is used over its libp2p stream */
  directTimeoutMs: 3_000,
  /**
   * the ceiling of one FORWARD's deadline (a long prefill on a slow CPU
   * stage can take seconds); the deadline itself adapts to the stage's
   * measured speed (step-deadline.ts)
   */
  stepTimeoutMs: 120_000,
  /** positions each stage reserves for the session (0 = the stage's default) */
  maxLength: 0,
  /** OPEN priority when none is given: interactive (2), as the mesh's generate uses */
  priority: 2,
  /** largest RESULT accepted */
  maxFrameBytes: 256 * 1024 * 1024,
  /** a step of more rows gets stepTimeoutMs per this many rows as its ceiling (prefills, replays) */
  deadlineRows: 32,
  /**
   * no step deadline below this per deadlineRows positions (capped by the
   * ceiling): above the jitter of a shared host, and what a stalled stage
   * that was fast costs on top of its replacement's replay
   */
  deadlineFloorMs: 1_000,
  /**
   * a step's deadline is this many times what the stage is expected to take
   * (its own recent steps, or its announced speed): a stage that becomes 3x
   * slower still has 2x for jitter (4x left a loaded 2-core box too little)
   */
  deadlineMultiplier: 6,
  /** steps per stage the expectation is taken over (the median) */
  deadlineWindow: 16,
  /** failovers (stage replacements) one session may do before giving up */
  maxRecoveries: 8,
  /**
   * every holder of some layers answered BUSY: wait for room this long in all
   * (a mesh at capacity queues its clients rather than failing them)
   */
  busyWaitMs: 60_000,
  /** first back-off after an all-BUSY answer for an interactive session; batch waits 2x, background 4x; each later wait 1.5x longer */
  busyBackoffMs: 20,
  busyBackoffMaxMs: 1_000,
  /** replayed outputs may differ from the lost stage's by this much, relative to their largest value */
  replayTolerance: 1e-2
} as const
