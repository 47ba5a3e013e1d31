/**
 * The pipeline client's options (PipelineClientInit) and the same with
 * every default filled in from PIPELINE_CLIENT_DEFAULTS (PipelineClientConfig),
 * which is what its sessions read.
 */
import { PIPELINE_CLIENT_DEFAULTS } from './constants.ts'
import type { Recovery } from './failover.ts'
import type { PipelineStage } from './pipeline-stage.ts'
import type { ResolvedHop, RouteHop } from './route.ts'
import type { LocalEnds } from './stage-layers.ts'
import type { StepDeadlineInit } from './step-deadline.ts'
import type { AbortOptions, Libp2p } from '@libp2p/interface'

export interface PipelineClientInit {
  libp2p: Pick<Libp2p, 'dial' | 'peerStore'>
  /** the model id the stages serve */
  modelId: string
  /**
   * the weights version every stage of every session must serve (64 hex
   * characters; OPEN pins it, a stage on another version refuses with
   * WRONG_VERSION and is routed around); absent: whatever the stages serve
   */
  weightsVersion?: string
  /** the client's own embedding, final norm and head (e.g. LayerRange.load(config, source, { start: 0, end: 0, embedding: true, head: true })) */
  local: LocalEnds
  /** stages covering decoder layers [0, numLayers) in order */
  route: RouteHop[]
  protocol?: string
  maxLength?: number
  priority?: number
  openTimeoutMs?: number
  stepTimeoutMs?: number
  maxFrameBytes?: number
  /** try a direct TLS channel to each stage first (default true; falls back to libp2p streams) */
  directChannel?: boolean
  /**
   * A step's deadline adapts to the stage (step-deadline.ts): deadlineMultiplier
   * times what its recent steps in this session took (before its first step,
   * its announced speed, RouteHop.msPerPosition), at least deadlineFloorMs;
   * stepTimeoutMs per deadlineRows rows is the ceiling
   */
  deadlineRows?: number
  deadlineFloorMs?: number
  deadlineMultiplier?: number
  /** the stage's steps the expectation is taken over */
  deadlineWindow?: number
  /**
   * Other stages for decoder layers [lost.start, lost.end) that avoid every
   * peer in `banned` (peer id strings): one hop or several, in order. Without
   * it a failed stage fails the step (no failover).
   */
  reroute?(lost: { start: number, end: number }, banned: ReadonlySet<string>, options: AbortOptions): Promise<RouteHop[]>
  /** failovers one session may do (default 8) */
  maxRecoveries?: number
  /**
   * When every holder of some layers answers BUSY, wait for room this long in
   * all (backing off between tries) before failing; see PIPELINE_CLIENT_DEFAULTS
   */
  busyWaitMs?: number
  /** first back-off after an all-BUSY answer, for an interactive session (batch waits 2x, background 4x) */
  busyBackoffMs?: number
  /** longest single back-off */
  busyBackoffMaxMs?: number
  /** largest relative difference allowed between replayed outputs and the lost stage's (default 1e-2) */
  replayTolerance?: number
  /** told of every failover as it completes */
  onRecovery?(recovery: Recovery, sessionId: number): void
  /** told of every step a stage answered on the session's route (failover replays not included): its hop, the rows fed, the ms from send to result */
  onStep?(hop: ResolvedHop, rows: number, ms: number, sessionId: number): void
  /**
   * A stage for a hop this process serves itself (libp2p cannot dial its own
   * peer id); undefined = open a StageClient to the hop's peer as usual.
   */
  openStage?(hop: ResolvedHop, sessionId: number): PipelineStage | undefined
  /**
   * Signs, at the session's close, the receipt of each remote stage's work
   * (docs/ledger.md): sent as a RECEIPT before CLOSE. Absent = no receipts.
   */
  receipts?: ClientReceipts
}

/** What one remote stage did in a session, as the client counted it (rows of the RESULTs it received). */
export interface StageWork {
  /** the stage's peer id */
  stage: string
  sessionId: number
  /** decoder layers [start, end) it ran */
  start: number
  end: number
  positions: number
  /** the session's one-position steps: the tokens decoded */
  tokens: number
  /** the weights version the session pinned (hex), if any: the receipt names it */
  version?: string
}

/** The client's receipt signer: the canonical receipt body of `work` and the client's signature of it, or null for none. */
export interface ClientReceipts {
  sign(work: StageWork): Promise<{ body: Uint8Array, clientSig: Uint8Array } | null>
}

type OptionalInit = 'protocol' | 'openStage' | 'reroute' | 'onRecovery' | 'weightsVersion' | 'onStep' | 'receipts'

/** PipelineClientInit with every default filled in. */
export type PipelineClientConfig = Required<Omit<PipelineClientInit, OptionalInit>> & Pick<PipelineClientInit, OptionalInit>

/** The step deadline rule's parameters in `config` (step-deadline.ts). */
export function stepDeadlineInit (config: PipelineClientConfig): StepDeadlineInit {
  return { ceilingMs: config.stepTimeoutMs, ceilingRows: config.deadlineRows, floorMs: config.deadlineFloorMs, multiplier: config.deadlineMultiplier, window: config.deadlineWindow }
}

export function pipelineClientConfig (init: PipelineClientInit): PipelineClientConfig {
  const d = PIPELINE_CLIENT_DEFAULTS
  return {
    ...init,
    maxLength: init.maxLength ?? d.maxLength,
    priority: init.priority ?? d.priority,
    openTimeoutMs: init.openTimeoutMs ?? d.openTimeoutMs,
    stepTimeoutMs: init.stepTimeoutMs ?? d.stepTimeoutMs,
    maxFrameBytes: init.maxFrameBytes ?? d.maxFrameBytes,
    directChannel: init.directChannel ?? true,
    deadlineRows: init.deadlineRows ?? d.deadlineRows,
    deadlineFloorMs: init.deadlineFloorMs ?? d.deadlineFloorMs,
    deadlineMultiplier: init.deadlineMultiplier ?? d.deadlineMultiplier,
    deadlineWindow: init.deadlineWindow ?? d.deadlineWindow,
    maxRecoveries: init.maxRecoveries ?? d.maxRecoveries,
    busyWaitMs: init.busyWaitMs ?? d.busyWaitMs,
    busyBackoffMs: init.busyBackoffMs ?? d.busyBackoffMs,
    busyBackoffMaxMs: init.busyBackoffMaxMs ?? d.busyBackoffMaxMs,
    replayTolerance: init.replayTolerance ?? d.replayTolerance
  }
}
