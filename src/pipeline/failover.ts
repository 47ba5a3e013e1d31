/**
 * A pipeline session's failover: replacing a stage that failed a step.
 *
 * Order of one recovery: the failed peer is banned for the session and its
 * stage dropped first; then `reroute` is asked for other holders of the lost
 * layers [s, e) (one span or several), they are opened, and the lost stage's
 * whole input history (the hidden states entering layer s at every position
 * so far, the failed step's included) is replayed as ONE prefill FORWARD per
 * replacement, chained through them. The replayed outputs must match what
 * the lost stage produced before (replayTolerance); only then are the
 * replacements spliced into the route, their inputs into the history, and
 * the recovery recorded. A replacement that fails too is banned and the next
 * one tried; a chain whose replay disagrees is banned whole. Nothing of the
 * route changes until a replacement chain has replayed and matched.
 */
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { dropStage } from './pipeline-stage.ts'
import { resolveRoute } from './route.ts'
import { FailureReason, checkStageResult, failureReason } from './stage-failure.ts'
import { concatInputs } from './stage-history.ts'
import type { PeerBans } from './peer-bans.ts'
import type { PipelineStage } from './pipeline-stage.ts'
import type { ResolvedHop, RouteHop } from './route.ts'
import type { SessionRoute } from './session-route.ts'
import type { FailureReasonValue } from './stage-failure.ts'
import type { AbortOptions } from '@libp2p/interface'

/** One failover: the stage on `peerId` for layers [start, end) was replaced by `replacement`. */
export interface Recovery {
  peerId: string
  reason: FailureReasonValue
  /** the failure's message */
  error: string
  start: number
  end: number
  replacement: Array<{ peerId: string, start: number, end: number }>
  /** positions replayed into the replacement */
  positions: number
  /** largest relative difference of the replayed outputs from the lost stage's (0 when none could be compared) */
  replayDiff: number
  /** peers tried and given up on during this failover (besides peerId) */
  alsoBanned: string[]
  /** from the failure to the current step's result through the replacement */
  ms: number
  /** the step deadline the lost stage missed (reason timeout only) */
  deadlineMs?: number
}

/** Other stages for decoder layers [lost.start, lost.end) that avoid every peer in `banned`: one hop or several, in order. */
export type Reroute = (lost: { start: number, end: number }, banned: ReadonlySet<string>, options: AbortOptions) => Promise<RouteHop[]>

export interface FailoverInit {
  sessionId: number
  hiddenSize: number
  reroute: Reroute
  /** failovers one session may do */
  maxRecoveries: number
  /** largest relative difference allowed between replayed outputs and the lost stage's */
  replayTolerance: number
  /** told of every failover as it completes */
  onRecovery?(recovery: Recovery, sessionId: number): void
}

export interface FailoverComponents {
  route: SessionRoute
  bans: PeerBans
  /** opens the stage of `hop` at route position `index` */
  openStage(hop: ResolvedHop, index: number, options: AbortOptions): Promise<PipelineStage>
  /** the deadline of a step of `rows` positions on `hop` */
  deadline(hop: ResolvedHop, rows: number): number
  /** a step of `rows` positions on `hop` answered after `ms` */
  record(hop: ResolvedHop, rows: number, ms: number): void
  /** positions the session has computed (0: before the first step) */
  position(): number
  /** throws SESSION_CLOSED once the session is closed */
  assertOpen(): void
}

/** The first step met only BUSY holders for some layers: the session gives its stages back and tries again. */
export class AdmissionBusy extends PipelineError {
  constructor (message: string) {
    super(PipelineErrorCode.BUSY, message)
  }
}

export class Failover {
  /** failovers so far */
  readonly recoveries: Recovery[]
  private readonly init: FailoverInit
  private readonly components: FailoverComponents

  constructor (components: FailoverComponents, init: FailoverInit) {
    this.components = components
    this.init = init
    this.recoveries = []
  }

  /**
   * Replaces stage `index` after it failed during a step of `rows` positions
   * (its input for that step is already in its history): see the file's
   * comment for the order. Resolves the step's output through the
   * replacements and how many stages now stand where stage `index` stood.
   * Throws RECOVERY_FAILED when no replacement can be found, AdmissionBusy
   * before the first step when every holder left is BUSY. `deadlineMs`: the
   * deadline the failed step missed, when it timed out.
   */
  async recover (index: number, reason: FailureReasonValue, cause: Error, rows: number, options: AbortOptions, deadlineMs?: number): Promise<{ data: Float32Array, stages: number }> {
    const c = this.init
    const { route, bans } = this.components
    const t0 = performance.now()
    const lost = route.hops[index]
    const lostPeer = lost.peerId.toString()
    const hidden = c.hiddenSize
    bans.ban(lostPeer, reason)
    dropStage(route.stages[index], cause)
    const input = concatInputs(route.history[index], hidden)
    // what the lost stage produced for the positions before this step (the next stage's inputs, or the session's outputs)
    const before = concatInputs(route.history[index + 1], hidden)
    const alsoBanned: string[] = []
    let lastError: Error = cause
    while (true) {
      options.signal?.throwIfAborted()
      if (this.recoveries.length >= c.maxRecoveries) {
        throw new PipelineError(PipelineErrorCode.RECOVERY_FAILED, `stage ${index} [${lost.start}, ${lost.end}) on ${lostPeer} failed (${reason}: ${cause.message}); ${this.recoveries.length} failovers already, no more are allowed`, { stage: index, cause: lastError })
      }
      let hops: ResolvedHop[]
      try {
        const found = await c.reroute({ start: lost.start, end: lost.end }, bans.banned, options)
        hops = resolveRoute(found.map(h => ({ ...h, start: h.start - lost.start, end: h.end - lost.start })), lost.end - lost.start)
          .map(h => ({ ...h, start: h.start + lost.start, end: h.end + lost.start }))
      } catch (err) {
        options.signal?.throwIfAborted()
        if (bans.anyBusy) {
          // the holders left are full, not broken: before the first step, give back every
          // stage and start again after a back-off (holding some stages while waiting for
          // others could deadlock sessions against each other); later, wait here
          if (this.components.position() === 0) {
            throw new AdmissionBusy(`every holder of layers [${lost.start}, ${lost.end}) is busy`)
          }
          await bans.waitForRoom(`layers [${lost.start}, ${lost.end})`, this.components.assertOpen, options)
          continue
        }
        throw new PipelineError(PipelineErrorCode.RECOVERY_FAILED, `stage ${index} [${lost.start}, ${lost.end}) on ${lostPeer} failed (${reason}: ${cause.message}) and no other holder can take it: ${(err as Error).message}`, { stage: index, cause: err })
      }
      const stages: PipelineStage[] = []
      const outputs: Float32Array[] = []
      let failedAt = -1
      try {
        for (let j = 0; j < hops.length; j++) {
          failedAt = j
          stages.push(await this.components.openStage(hops[j], index + j, options))
        }
        let x = input.data
        for (let j = 0; j < hops.length; j++) {
          failedAt = j
          if (input.rows > 0) {
            const t = performance.now()
            const r = await stages[j].forward(x, input.rows, hidden, 0, { signal: options.signal, timeoutMs: this.components.deadline(hops[j], input.rows) })
            checkStageResult(r, input.rows, hidden, 0, index + j)
            this.components.record(hops[j], input.rows, performance.now() - t)
            x = r.data
          }
          outputs.push(x)
        }
      } catch (err) {
        const why = failureReason(err, options.signal)
        await Promise.allSettled(stages.map(async s => s.close()))
        if (why == null) {
          throw err
        }
        const bad = hops[failedAt].peerId.toString()
        bans.ban(bad, why)
        alsoBanned.push(bad)
        lastError = err as Error
        continue
      }
      const last = outputs[outputs.length - 1]
      const replayDiff = before.rows > 0 ? relativeDiff(last, before.data, before.rows * hidden) : 0
      if (!(replayDiff <= c.replayTolerance)) {
        // the replacement chain disagrees with what the lost stage produced: trust neither more than the rest
        for (const h of hops) {
          bans.banned.add(h.peerId.toString())
          alsoBanned.push(h.peerId.toString())
        }
        await Promise.allSettled(stages.map(async s => s.close()))
        lastError = new PipelineError(PipelineErrorCode.BAD_FRAME, `replayed outputs differ from the lost stage's by ${replayDiff} (relative)`, { stage: index })
        continue
      }
      // splice the replacements in where the lost stage stood
      route.replace(index, hops, stages, [route.history[index], ...outputs.slice(0, -1).map(data => [{ startPos: 0, rows: input.rows, data }])])
      const recovery: Recovery = {
        peerId: lostPeer,
        reason,
        error: cause.message,
        start: lost.start,
        end: lost.end,
        replacement: hops.map(h => ({ peerId: h.peerId.toString(), start: h.start, end: h.end })),
        positions: input.rows,
        replayDiff,
        alsoBanned,
        ms: performance.now() - t0,
        ...(reason === FailureReason.TIMEOUT && deadlineMs != null ? { deadlineMs } : {})
      }
      this.recoveries.push(recovery)
      bans.settled()
      c.onRecovery?.(recovery, c.sessionId)
      return { data: last.subarray((input.rows - rows) * hidden), stages: hops.length }
    }
  }
}

/**
 * The largest |a - b| over the first `length` values, relative to the largest
 * |b| (at least 1): 0 = identical. Hidden states of real models reach values
 * in the thousands, so an absolute bound would not fit every model.
 */
export function relativeDiff (a: Float32Array, b: Float32Array, length: number): number {
  let diff = 0
  let scale = 1
  for (let i = 0; i < length; i++) {
    const d = Math.abs(a[i] - b[i])
    if (Number.isNaN(d)) {
      return Infinity
    }
    if (d > diff) {
      diff = d
    }
    const m = Math.abs(b[i])
    if (m > scale) {
      scale = m
    }
  }
  return diff / scale
}
