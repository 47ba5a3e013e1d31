/**
 * One generation session through a route of remote stages, with
 * client-driven chaining: the client embeds the tokens, sends the hidden
 * states to stage 1, takes its RESULT and sends it to stage 2, ... and runs
 * the final norm + head itself. Every input sent to every stage is kept
 * (stage-history.ts) for replay onto another peer. Steps run one at a time,
 * in call order (forward, truncate); a failed stage is replaced by
 * failover.ts before the step goes on. Each step's deadline comes from what
 * that stage took in this session (step-deadline.ts), recorded after every
 * step and replay it answered.
 *
 * Before the first step, when every holder of some layers answered BUSY,
 * the session gives back every stage it holds and starts over after a
 * back-off (peer-bans.ts), so sessions waiting for room never hold stages
 * another session needs.
 */
import { randomInt } from 'node:crypto'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { AdmissionBusy, Failover } from './failover.ts'
import { PeerBans } from './peer-bans.ts'
import { stepDeadlineInit } from './pipeline-client-init.ts'
import { FailedStage, openPipelineStage } from './pipeline-stage.ts'
import { SessionRoute } from './session-route.ts'
import { StageClient } from './stage-client.ts'
import { checkStageResult, failureReason } from './stage-failure.ts'
import { truncateInputs } from './stage-history.ts'
import { embedData, logitsData } from './stage-layers.ts'
import { StepDeadlines } from './step-deadline.ts'
import type { Recovery } from './failover.ts'
import type { ClientReceipts, PipelineClientConfig } from './pipeline-client-init.ts'
import type { PipelineStage } from './pipeline-stage.ts'
import type { ResolvedHop } from './route.ts'
import type { StageInput } from './stage-history.ts'
import type { StepLogits, VerifyingSession } from '../model/generation/token-model.ts'
import type { AbortOptions } from '@libp2p/interface'

export interface PipelineSessionStats {
  steps: number
  positions: number
  /** per stage: milliseconds from sending a FORWARD to its RESULT (compute + transport) */
  stageMs: number[]
  /** milliseconds in the local embedding + head */
  localMs: number
}

/** Signs and sends the RECEIPT of a remote stage that ran positions (a stage of this process, or one that ran none, gets none). */
async function sendReceipt (receipts: ClientReceipts, stage: PipelineStage, hop: ResolvedHop | undefined, sessionId: number, tokens: number, version: string | undefined): Promise<void> {
  if (!(stage instanceof StageClient) || hop == null || stage.positions < 1) {
    return
  }
  const signed = await receipts.sign({ stage: hop.peerId.toString(), sessionId, start: stage.start, end: stage.end, positions: stage.positions, tokens: Math.min(tokens, stage.positions), ...(version != null ? { version } : {}) })
  if (signed != null) {
    await stage.receipt(signed.body, signed.clientSig)
  }
}

export class PipelineSession implements VerifyingSession {
  readonly sessionId: number
  readonly stats: PipelineSessionStats
  /** failovers so far */
  readonly recoveries: Recovery[]
  private readonly config: PipelineClientConfig
  private readonly bans: PeerBans
  private readonly current: SessionRoute
  private readonly failover?: Failover
  /** what each stage took per step in this session: the step deadlines */
  private readonly deadlines: StepDeadlines
  private opening?: Promise<void>
  private chain: Promise<unknown>
  private pos: number
  private closed: boolean
  /** one-position steps: the tokens decoded (a receipt's `tokens`) */
  private decodeSteps: number

  constructor (client: { readonly init: PipelineClientConfig }, hops: ResolvedHop[]) {
    const c = client.init
    this.config = c
    this.sessionId = randomInt(1, 0xffffffff)
    this.stats = { steps: 0, positions: 0, stageMs: hops.map(() => 0), localMs: 0 }
    this.current = new SessionRoute(hops, this.stats.stageMs)
    this.bans = new PeerBans(c)
    this.deadlines = new StepDeadlines(stepDeadlineInit(c))
    const reroute = c.reroute
    if (reroute != null) {
      this.failover = new Failover({
        route: this.current,
        bans: this.bans,
        openStage: async (hop, index, options) => this.openStage(hop, index, options),
        deadline: (hop, rows) => this.deadline(hop, rows),
        record: (hop, rows, ms) => { this.deadlines.record(workerOf(hop), rows, ms) },
        position: () => this.pos,
        assertOpen: () => { this.assertOpen() }
      }, {
        sessionId: this.sessionId,
        hiddenSize: c.local.config.hiddenSize,
        reroute: async (lost, banned, options) => reroute(lost, banned, options),
        maxRecoveries: c.maxRecoveries,
        replayTolerance: c.replayTolerance,
        onRecovery: c.onRecovery
      })
    }
    this.recoveries = this.failover?.recoveries ?? []
    this.chain = Promise.resolve()
    this.pos = 0
    this.closed = false
    this.decodeSteps = 0
  }

  /** Positions the stages have cached. */
  get length (): number {
    return this.pos
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** peers this session gave up on (peer id strings) */
  get banned (): Set<string> {
    return this.bans.banned
  }

  /** how often this session waited for room because every holder it could use was BUSY */
  get busyWaits (): number {
    return this.bans.busyWaits
  }

  /** The FORWARDs sent to stage `index` that are still part of the session (after truncations and replays). */
  inputs (index: number): readonly StageInput[] {
    return index < this.current.hops.length ? this.current.history[index] : []
  }

  /** The stages in use now (the client's route, with failed stages replaced). */
  get route (): readonly ResolvedHop[] {
    return this.current.hops
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
    const opened = await Promise.allSettled(this.current.hops.map(async (hop, i) => this.openStage(hop, i, options)))
    if (this.failover != null && !this.closed && options.signal?.aborted !== true) {
      // a stage that would not open fails the first step, which replaces it
      this.current.stages = opened.map(r => r.status === 'fulfilled' ? r.value : new FailedStage(r.reason))
      return
    }
    const stages = opened.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    const failed = opened.find(r => r.status === 'rejected')
    if (failed != null || this.closed) {
      await Promise.allSettled(stages.map(async s => s.close()))
      throw failed != null ? (failed as PromiseRejectedResult).reason : new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'session closed while opening')
    }
    this.current.stages = stages
  }

  private async openStage (hop: ResolvedHop, index: number, options: AbortOptions): Promise<PipelineStage> {
    return openPipelineStage(this.config, hop, index, this.sessionId, options)
  }

  /** The deadline of a step of `rows` positions on `hop` (step-deadline.ts). */
  private deadline (hop: ResolvedHop, rows: number): number {
    return this.deadlines.deadline(workerOf(hop), rows, hop.msPerPosition)
  }

  /**
   * Runs a step through stage `index`; on a failure worth routing around
   * (and with `reroute`), replaces the stage (failover.ts). Resolves the
   * step's output and how many stages now stand where stage `index` stood.
   */
  private async step (index: number, data: Float32Array, rows: number, startPos: number, options: AbortOptions): Promise<{ data: Float32Array, stages: number }> {
    const hidden = this.config.local.config.hiddenSize
    const hop = this.current.hops[index]
    const timeoutMs = this.deadline(hop, rows)
    const t = performance.now()
    try {
      const r = await this.current.stages[index].forward(data, rows, hidden, startPos, { signal: options.signal, timeoutMs })
      checkStageResult(r, rows, hidden, startPos, index)
      const ms = performance.now() - t
      this.stats.stageMs[index] += ms
      this.deadlines.record(workerOf(hop), rows, ms)
      this.config.onStep?.(hop, rows, ms, this.sessionId)
      return { data: r.data, stages: 1 }
    } catch (err) {
      const reason = failureReason(err, options.signal)
      if (reason == null || this.failover == null || this.closed) {
        throw err
      }
      return this.failover.recover(index, reason, err as Error, rows, options, timeoutMs)
    }
  }

  /** Before the first step: closes every stage (freeing their slots) so the step starts over on a fresh open. */
  private async restartAdmission (): Promise<void> {
    const stages = this.current.stages
    this.current.stages = []
    this.opening = undefined
    await Promise.allSettled(stages.map(async s => s.close()))
    for (const list of this.current.history) {
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
      await Promise.all(this.current.stages.map(async s => s.truncate(length)))
      const hidden = this.config.local.config.hiddenSize
      for (const list of this.current.history) {
        truncateInputs(list, length, hidden)
      }
      this.pos = length
    })
  }

  /** CLOSEs every stage session (idempotent), each remote stage's RECEIPT first when the client signs receipts. */
  async close (): Promise<void> {
    this.closed = true
    await this.opening?.catch(() => {})
    const stages = this.current.stages
    const hops = this.current.hops
    this.current.stages = []
    const receipts = this.config.receipts
    if (receipts != null) {
      await Promise.allSettled(stages.map(async (s, i) => sendReceipt(receipts, s, hops[i], this.sessionId, this.decodeSteps, this.config.weightsVersion)))
    }
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
        this.bans.settled()
        return out
      } catch (err) {
        if (!(err instanceof AdmissionBusy)) {
          throw err
        }
        await this.restartAdmission()
        await this.bans.waitForRoom('the route', () => { this.assertOpen() }, options)
      }
    }
  }

  private async forwardOnce (ids: number[], options: AbortOptions & { allRows?: boolean }): Promise<StepLogits> {
    this.assertOpen()
    if (ids.length === 0) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'no token ids')
    }
    await this.open(options)
    const { local } = this.config
    const { hiddenSize, vocabSize } = local.config
    const rows = ids.length
    const startPos = this.pos
    const { history } = this.current
    let t = performance.now()
    let hidden = await embedData(local, ids)
    this.stats.localMs += performance.now() - t
    for (let i = 0; i < this.current.stages.length;) {
      history[i].push({ startPos, rows, data: hidden })
      const r = await this.step(i, hidden, rows, startPos, options)
      hidden = r.data
      i += r.stages
    }
    history[this.current.stages.length].push({ startPos, rows, data: hidden })
    this.pos += rows
    this.stats.steps++
    this.stats.positions += rows
    if (rows === 1) {
      this.decodeSteps++
    }
    t = performance.now()
    const from = options.allRows === true ? 0 : rows - 1
    const logits = await logitsData(local, hidden, rows, hiddenSize, from)
    this.stats.localMs += performance.now() - t
    return { logits, rows: rows - from, vocab: vocabSize }
  }
}

/** The key of a stage's step times: its peer and the layers it runs for the session. */
function workerOf (hop: ResolvedHop): string {
  return `${hop.peerId.toString()}/${hop.start}-${hop.end}`
}
