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

/** Train stage service defaults (/bly/train/1.0.0, mesh/train/train-stage-service.ts). */
export const TRAIN_STAGE_DEFAULTS = {
  /** jobs a stage hosts at once; one more OPEN_JOB is answered BUSY */
  maxJobs: 2,
  /**
   * bytes of activations one job may hold (each micro-batch's layer inputs,
   * linear products and head gradient until its BACKWARD): a FORWARD past
   * it is answered BUSY. 256 MiB: a step of 8 micro-batches of 128 tokens
   * on a 0.6B model's 7-layer stage fits
   */
  maxJobBytes: 256 * 1024 * 1024,
  /** largest frame accepted (a FORWARD of 4096 tokens x 4096 hidden f32 is 64 MiB) */
  maxFrameBytes: 80 * 1024 * 1024,
  maxInboundStreams: 32
} as const

/** Pipeline-training driver defaults (mesh/train/pipeline-train.ts). */
export const PIPELINE_TRAIN_DEFAULTS = {
  /** longest wait for one answer of a stage (a FORWARD of a whole stage's layers under load included) */
  requestTimeoutMs: 120_000,
  maxFrameBytes: 80 * 1024 * 1024,
  /** stage failures (and garbage verdicts) a job recovers from before it ends ERR_PTRAIN_TOO_MANY_FAULTS */
  maxRecoveries: 8,
  /** share of steps on which one stage (seeded choice) is audited by another holder anyway */
  auditRate: 0.05,
  /** an answer is anomalous when a sum of squares of its gradients exceeds this many times the hop's largest of its last `anomalyWindow` accepted steps (1e4: 100x the norm) */
  anomalyFactor: 1e4,
  anomalyWindow: 16,
  /** two holders agree when every answered tensor is within this relative L2 distance (bitwise equal on one backend; leaves room for another backend's rounding) */
  auditTolerance: 1e-4
} as const
