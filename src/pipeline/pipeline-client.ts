/**
 * Runs a generation session through a route of remote stages with
 * client-driven chaining: the client embeds the tokens, sends the hidden
 * states to stage 1, takes its RESULT and sends it to stage 2, ... and runs
 * the final norm + head itself. It keeps every input it sent to every stage
 * (for replay onto another peer). It is a TokenModel, so generate() and its
 * Sampler drive it unchanged.
 *
 * Failover (with `reroute`): when a stage's stream closes, it answers ERROR
 * or BUSY, misses the step deadline, or sends a malformed RESULT (wrong
 * shape or position, NaN/Inf), the session bans that peer for the rest of
 * the session, asks `reroute` for other holders of the lost layers [s, e)
 * (one span or several), opens them and replays the stage's whole input
 * history (the hidden states entering layer s at every position so far) as
 * ONE prefill FORWARD per replacement, chained through them. The replayed
 * outputs must match what the lost stage produced before (replayTolerance),
 * then the current step goes on. Greedy output is the same as without the
 * failure; each failover is kept in `recoveries`.
 */
import { randomInt } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { PIPELINE_CLIENT_DEFAULTS } from './constants.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { FailureReason, checkStageResult, concatInputs, failureReason, relativeDiff } from './failover.ts'
import { resolveRoute } from './route.ts'
import { StageClient } from './stage-client.ts'
import { embedData, logitsData } from './stage-layers.ts'
import type { FailureReasonValue } from './failover.ts'
import type { ResolvedHop, RouteHop } from './route.ts'
import type { StepOptions } from './stage-client.ts'
import type { LocalEnds } from './stage-layers.ts'
import type { StepLogits, TokenModel, VerifyingSession } from '../model/generation/token-model.ts'
import type { AbortOptions, Libp2p } from '@libp2p/interface'

export interface PipelineClientInit {
  libp2p: Pick<Libp2p, 'dial' | 'peerStore'>
  /** the model id the stages serve */
  modelId: string
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
  /** a step of more rows than this gets stepTimeoutMs per this many rows (prefill, replay) */
  deadlineRows?: number
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
  /**
   * A stage for a hop this process serves itself (libp2p cannot dial its own
   * peer id); undefined = open a StageClient to the hop's peer as usual.
   */
  openStage?(hop: ResolvedHop, sessionId: number): PipelineStage | undefined
}

/** What a session drives per hop: a StageClient, or a stage run in this process (openStage). */
export interface PipelineStage {
  forward(data: Float32Array, rows: number, cols: number, startPos: number, options?: StepOptions): Promise<{ rows: number, cols: number, startPos: number, data: Float32Array }>
  truncate(length: number): Promise<void>
  close(): Promise<void>
}

/** One FORWARD sent to a stage, kept for replay. */
export interface StageInput {
  startPos: number
  rows: number
  /** [rows, hidden] f32 */
  data: Float32Array
}

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
}

export interface PipelineSessionStats {
  steps: number
  positions: number
  /** per stage: milliseconds from sending a FORWARD to its RESULT (compute + transport) */
  stageMs: number[]
  /** milliseconds in the local embedding + head */
  localMs: number
}

export class PipelineSession implements VerifyingSession {
  readonly sessionId: number
  readonly stats: PipelineSessionStats
  /** failovers so far */
  readonly recoveries: Recovery[]
  /** peers this session gave up on (peer id strings) */
  readonly banned: Set<string>
  /** how often this session waited for room because every holder it could use was BUSY */
  busyWaits: number
  /** the banned peers that only answered BUSY: they are tried again after a back-off */
  private readonly busyPeers: Set<string>
  /** when the current run of BUSY waits began (undefined: not waiting) */
  private busySince?: number
  private readonly client: PipelineClient
  private readonly hops: ResolvedHop[]
  /** per stage the inputs it was sent; one more list at the end: the last stage's outputs */
  private readonly history: StageInput[][]
  private stages: PipelineStage[]
  private opening?: Promise<void>
  private chain: Promise<unknown>
  private pos: number
  private closed: boolean

  constructor (client: PipelineClient, hops: ResolvedHop[]) {
    this.client = client
    this.hops = [...hops]
    this.sessionId = randomInt(1, 0xffffffff)
    this.history = [...hops.map(() => []), []]
    this.recoveries = []
    this.banned = new Set()
    this.busyPeers = new Set()
    this.busyWaits = 0
    this.stages = []
    this.chain = Promise.resolve()
    this.pos = 0
    this.closed = false
    this.stats = { steps: 0, positions: 0, stageMs: hops.map(() => 0), localMs: 0 }
  }

  /** Positions the stages have cached. */
  get length (): number {
    return this.pos
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** The FORWARDs sent to stage `index` that are still part of the session (after truncations and replays). */
  inputs (index: number): readonly StageInput[] {
    return index < this.hops.length ? this.history[index] : []
  }

  /** The stages in use now (the client's route, with failed stages replaced). */
  get route (): readonly ResolvedHop[] {
    return this.hops
  }

  /** Opens one stream per stage (all at once); called by the first step when not called before. */
  async open (options: AbortOptions = {}): Promise<void> {
    this.assertOpen()
    this.opening ??= this.openAll(options).catch(async (err) => {
      this.opening = undefined
      throw err
    })
    return this.opening
  }

  private async openAll (options: AbortOptions): Promise<void> {
    const c = this.client.init
    const opened = await Promise.allSettled(this.hops.map(async (hop, i) => this.openStage(hop, i, options)))
    if (c.reroute != null && !this.closed && options.signal?.aborted !== true) {
      // a stage that would not open fails the first step, which replaces it
      this.stages = opened.map(r => r.status === 'fulfilled' ? r.value : new FailedStage(r.reason))
      return
    }
    const stages = opened.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    const failed = opened.find(r => r.status === 'rejected')
    if (failed != null || this.closed) {
      await Promise.allSettled(stages.map(async s => s.close()))
      throw failed != null ? (failed as PromiseRejectedResult).reason : new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'session closed while opening')
    }
    this.stages = stages
  }

  private async openStage (hop: ResolvedHop, index: number, options: AbortOptions): Promise<PipelineStage> {
    const c = this.client.init
    const own = c.openStage?.(hop, this.sessionId)
    if (own != null) {
      return own
    }
    if (hop.multiaddrs.length > 0) {
      await c.libp2p.peerStore.merge(hop.peerId, { multiaddrs: hop.multiaddrs })
    }
    return StageClient.open({
      libp2p: c.libp2p,
      peer: hop.peerId,
      modelId: c.modelId,
      start: hop.start,
      end: hop.end,
      sessionId: this.sessionId,
      stage: index,
      protocol: c.protocol,
      maxLength: c.maxLength,
      priority: c.priority,
      openTimeoutMs: c.openTimeoutMs,
      stepTimeoutMs: c.stepTimeoutMs,
      maxFrameBytes: c.maxFrameBytes,
      directChannel: c.directChannel,
      signal: options.signal
    })
  }

  /** The deadline of a step of `rows` positions: stepTimeoutMs per deadlineRows rows. */
  private deadline (rows: number): number {
    const c = this.client.init
    return c.stepTimeoutMs * Math.max(1, Math.ceil(rows / c.deadlineRows))
  }

  /**
   * Runs a step through stage `index`; on a failure worth routing around
   * (and with `reroute`), replaces the stage (see recover). Resolves the
   * step's output and how many stages now stand where stage `index` stood.
   */
  private async step (index: number, data: Float32Array, rows: number, startPos: number, options: AbortOptions): Promise<{ data: Float32Array, stages: number }> {
    const hidden = this.client.init.local.config.hiddenSize
    const t = performance.now()
    try {
      const r = await this.stages[index].forward(data, rows, hidden, startPos, { signal: options.signal, timeoutMs: this.deadline(rows) })
      checkStageResult(r, rows, hidden, startPos, index)
      this.stats.stageMs[index] += performance.now() - t
      return { data: r.data, stages: 1 }
    } catch (err) {
      const reason = failureReason(err, options.signal)
      if (reason == null || this.client.init.reroute == null || this.closed) {
        throw err
      }
      return this.recover(index, reason, err as Error, rows, options)
    }
  }

  /**
   * Replaces stage `index` after it failed during a step of `rows` positions
   * (its input for that step is already in its history): bans the peer, asks
   * reroute for the layers, opens the replacements, replays the stage's
   * input history through them in one FORWARD each and checks the replayed
   * outputs against the ones the lost stage produced. A replacement that
   * fails too is banned and the next one tried.
   */
  private async recover (index: number, reason: FailureReasonValue, cause: Error, rows: number, options: AbortOptions): Promise<{ data: Float32Array, stages: number }> {
    const c = this.client.init
    const t0 = performance.now()
    const lost = this.hops[index]
    const lostPeer = lost.peerId.toString()
    const hidden = c.local.config.hiddenSize
    this.ban(lostPeer, reason)
    dropStage(this.stages[index], cause)
    const input = concatInputs(this.history[index], hidden)
    // what the lost stage produced for the positions before this step (the next stage's inputs, or the session's outputs)
    const before = concatInputs(this.history[index + 1], hidden)
    const alsoBanned: string[] = []
    let lastError: Error = cause
    while (true) {
      options.signal?.throwIfAborted()
      if (this.recoveries.length >= c.maxRecoveries) {
        throw new PipelineError(PipelineErrorCode.RECOVERY_FAILED, `stage ${index} [${lost.start}, ${lost.end}) on ${lostPeer} failed (${reason}: ${cause.message}); ${this.recoveries.length} failovers already, no more are allowed`, { stage: index, cause: lastError })
      }
      let hops: ResolvedHop[]
      try {
        const route = await (c.reroute as NonNullable<PipelineClientInit['reroute']>)({ start: lost.start, end: lost.end }, this.banned, options)
        hops = resolveRoute(route.map(h => ({ ...h, start: h.start - lost.start, end: h.end - lost.start })), lost.end - lost.start)
          .map(h => ({ ...h, start: h.start + lost.start, end: h.end + lost.start }))
      } catch (err) {
        options.signal?.throwIfAborted()
        if (this.busyPeers.size > 0) {
          // the holders left are full, not broken: before the first step, give back every
          // stage and start again after a back-off (holding some stages while waiting for
          // others could deadlock sessions against each other); later, wait here
          if (this.pos === 0) {
            throw new AdmissionBusy(`every holder of layers [${lost.start}, ${lost.end}) is busy`)
          }
          await this.waitForRoom(`layers [${lost.start}, ${lost.end})`, options)
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
          stages.push(await this.openStage(hops[j], index + j, options))
        }
        let x = input.data
        for (let j = 0; j < hops.length; j++) {
          failedAt = j
          if (input.rows > 0) {
            const r = await stages[j].forward(x, input.rows, hidden, 0, { signal: options.signal, timeoutMs: this.deadline(input.rows) })
            checkStageResult(r, input.rows, hidden, 0, index + j)
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
        this.ban(bad, why)
        alsoBanned.push(bad)
        lastError = err as Error
        continue
      }
      const last = outputs[outputs.length - 1]
      const replayDiff = before.rows > 0 ? relativeDiff(last, before.data, before.rows * hidden) : 0
      if (!(replayDiff <= c.replayTolerance)) {
        // the replacement chain disagrees with what the lost stage produced: trust neither more than the rest
        for (const h of hops) {
          this.banned.add(h.peerId.toString())
          alsoBanned.push(h.peerId.toString())
        }
        await Promise.allSettled(stages.map(async s => s.close()))
        lastError = new PipelineError(PipelineErrorCode.BAD_FRAME, `replayed outputs differ from the lost stage's by ${replayDiff} (relative)`, { stage: index })
        continue
      }
      // splice the replacements in where the lost stage stood
      const inputs = [this.history[index], ...outputs.slice(0, -1).map(data => [{ startPos: 0, rows: input.rows, data }])]
      this.hops.splice(index, 1, ...hops)
      this.stages.splice(index, 1, ...stages)
      this.history.splice(index, 1, ...inputs)
      this.stats.stageMs.splice(index, 1, ...hops.map(() => 0))
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
        ms: performance.now() - t0
      }
      this.recoveries.push(recovery)
      this.busySince = undefined
      c.onRecovery?.(recovery, this.sessionId)
      return { data: last.subarray((input.rows - rows) * hidden), stages: hops.length }
    }
  }

  /** Gives up on `peer` for this session; one that only answered BUSY may be tried again after a back-off. */
  private ban (peer: string, reason: FailureReasonValue): void {
    if (!this.banned.has(peer) && reason === FailureReason.BUSY) {
      this.busyPeers.add(peer)
    } else if (reason !== FailureReason.BUSY) {
      this.busyPeers.delete(peer)
    }
    this.banned.add(peer)
  }

  /**
   * Every holder this session could use is BUSY: back off (longer for lower
   * priorities, so the most urgent sessions take the room that frees first),
   * then lift the bans of the busy peers. Throws RECOVERY_FAILED once the
   * waits of this run add up to more than busyWaitMs.
   */
  private async waitForRoom (what: string, options: AbortOptions): Promise<void> {
    const c = this.client.init
    const now = performance.now()
    this.busySince ??= now
    if (now - this.busySince > c.busyWaitMs) {
      throw new PipelineError(PipelineErrorCode.RECOVERY_FAILED, `every holder of ${what} stayed busy for ${Math.round(now - this.busySince)} ms`)
    }
    const level = Math.max(0, Math.min(2, 2 - c.priority))
    const ms = Math.min(c.busyBackoffMaxMs, c.busyBackoffMs * (2 ** level) * (1.5 ** Math.min(this.busyWaits, 16)))
    this.busyWaits++
    await sleep(ms * (0.5 + Math.random()), undefined, { signal: options.signal })
    this.assertOpen()
    for (const peer of this.busyPeers) {
      this.banned.delete(peer)
    }
    this.busyPeers.clear()
  }

  /** Before the first step: closes every stage (freeing their slots) so the step starts over on a fresh open. */
  private async restartAdmission (): Promise<void> {
    const stages = this.stages
    this.stages = []
    this.opening = undefined
    await Promise.allSettled(stages.map(async s => s.close()))
    for (const list of this.history) {
      list.length = 0
    }
  }

  /**
   * Runs new token ids through every stage at the next positions; resolves
   * the logits of the last position (or of every position with allRows).
   */
  async forward (ids: number[], options: AbortOptions & { allRows?: boolean } = {}): Promise<StepLogits> {
    return this.serial(async () => this.forwardNow(ids, options))
  }

  /** The next-token logits after feeding `ids` (TokenModel contract). */
  async nextLogits (ids: number[], options: AbortOptions = {}): Promise<Float32Array> {
    return (await this.forward(ids, options)).logits
  }

  /** Rewinds every stage's cache to `length` positions (rejected drafts, replay) and forgets the inputs past it. */
  async truncate (length: number): Promise<void> {
    return this.serial(async () => {
      if (!Number.isSafeInteger(length) || length < 0 || length > this.pos) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `cannot truncate a ${this.pos}-position session to ${length}`)
      }
      await this.open()
      await Promise.all(this.stages.map(async s => s.truncate(length)))
      const hidden = this.client.init.local.config.hiddenSize
      for (const list of this.history) {
        while (list.length > 0 && list[list.length - 1].startPos >= length) {
          list.pop()
        }
        const last = list[list.length - 1]
        if (last != null && last.startPos + last.rows > length) {
          const rows = length - last.startPos
          list[list.length - 1] = { startPos: last.startPos, rows, data: last.data.subarray(0, rows * hidden) }
        }
      }
      this.pos = length
    })
  }

  /** CLOSEs every stage session (idempotent). */
  async close (): Promise<void> {
    this.closed = true
    await this.opening?.catch(() => {})
    const stages = this.stages
    this.stages = []
    await Promise.allSettled(stages.map(async s => s.close()))
  }

  /** TokenSession: closes in the background. */
  dispose (): void {
    void this.close()
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  private assertOpen (): void {
    if (this.closed) {
      throw new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'pipeline session is closed')
    }
  }

  private async forwardNow (ids: number[], options: AbortOptions & { allRows?: boolean }): Promise<StepLogits> {
    while (true) {
      try {
        const out = await this.forwardOnce(ids, options)
        this.busySince = undefined
        return out
      } catch (err) {
        if (!(err instanceof AdmissionBusy)) {
          throw err
        }
        await this.restartAdmission()
        await this.waitForRoom('the route', options)
      }
    }
  }

  private async forwardOnce (ids: number[], options: AbortOptions & { allRows?: boolean }): Promise<StepLogits> {
    this.assertOpen()
    if (ids.length === 0) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'no token ids')
    }
    await this.open(options)
    const { local } = this.client.init
    const { hiddenSize, vocabSize } = local.config
    const rows = ids.length
    const startPos = this.pos
    let t = performance.now()
    let hidden = await embedData(local, ids)
    this.stats.localMs += performance.now() - t
    for (let i = 0; i < this.stages.length;) {
      this.history[i].push({ startPos, rows, data: hidden })
      const r = await this.step(i, hidden, rows, startPos, options)
      hidden = r.data
      i += r.stages
    }
    this.history[this.stages.length].push({ startPos, rows, data: hidden })
    this.pos += rows
    this.stats.steps++
    this.stats.positions += rows
    t = performance.now()
    const from = options.allRows === true ? 0 : rows - 1
    const logits = await logitsData(local, hidden, rows, hiddenSize, from)
    this.stats.localMs += performance.now() - t
    return { logits, rows: rows - from, vocab: vocabSize }
  }
}

/** The first step met only BUSY holders for some layers: the session gives its stages back and tries again. */
class AdmissionBusy extends PipelineError {
  constructor (message: string) {
    super(PipelineErrorCode.BUSY, message)
  }
}

/** Stands for a stage that would not open: its first step fails with the open error (and gets replaced). */
class FailedStage implements PipelineStage {
  private readonly error: Error

  constructor (error: Error) {
    this.error = error
  }

  async forward (): Promise<never> {
    throw this.error
  }

  async truncate (): Promise<void> {}

  async close (): Promise<void> {}
}

/** Gives up on a failed stage: aborts a StageClient's stream (its answers can no longer be trusted), else closes it. */
function dropStage (stage: PipelineStage, err: Error): void {
  if (stage instanceof StageClient) {
    stage.abort(err)
  } else {
    stage.close().catch(() => {})
  }
}

/**
 * A model whose decoder layers run on remote stages. createSession() is
 * cheap; the streams open on the session's first step.
 */
export class PipelineClient implements TokenModel<PipelineSession> {
  readonly init: Required<Omit<PipelineClientInit, 'protocol' | 'openStage' | 'reroute' | 'onRecovery'>> & Pick<PipelineClientInit, 'protocol' | 'openStage' | 'reroute' | 'onRecovery'>
  readonly route: ResolvedHop[]

  constructor (init: PipelineClientInit) {
    if (!init.local.hasEmbedding || !init.local.hasHead) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'the pipeline client needs the embedding and the head locally')
    }
    const d = PIPELINE_CLIENT_DEFAULTS
    this.init = {
      ...init,
      maxLength: init.maxLength ?? d.maxLength,
      priority: init.priority ?? d.priority,
      openTimeoutMs: init.openTimeoutMs ?? d.openTimeoutMs,
      stepTimeoutMs: init.stepTimeoutMs ?? d.stepTimeoutMs,
      maxFrameBytes: init.maxFrameBytes ?? d.maxFrameBytes,
      directChannel: init.directChannel ?? true,
      deadlineRows: init.deadlineRows ?? d.deadlineRows,
      maxRecoveries: init.maxRecoveries ?? d.maxRecoveries,
      busyWaitMs: init.busyWaitMs ?? d.busyWaitMs,
      busyBackoffMs: init.busyBackoffMs ?? d.busyBackoffMs,
      busyBackoffMaxMs: init.busyBackoffMaxMs ?? d.busyBackoffMaxMs,
      replayTolerance: init.replayTolerance ?? d.replayTolerance
    }
    this.route = resolveRoute(init.route, init.local.config.numLayers)
  }

  createSession (): PipelineSession {
    return new PipelineSession(this, this.route)
  }

  async nextLogits (session: PipelineSession, ids: number[]): Promise<Float32Array> {
    return session.nextLogits(ids)
  }
}

export function createPipelineClient (init: PipelineClientInit): PipelineClient {
  return new PipelineClient(init)
}
