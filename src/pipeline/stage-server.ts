/**
 * The serving side of /bly/infer/1.0.0: runs hidden states through the
 * decoder layers [start, end) of one model for remote clients. One inbound
 * stream is one generation session with its own KV cache. A session may ask
 * for any non-empty sub-range of [start, end) (Petals-style routing: a
 * holder of [0, 3) can stand in for a lost [0, 2)); it then runs and caches
 * only those layers. Steps are computed
 * one at a time (the math uses every core already): per session in arrival
 * order, across sessions highest priority first, then oldest first, a
 * waiting step gaining one priority level per priorityAgingMs (step-order.ts).
 * A full stage answers BUSY at once; an idle session loses its cache; a
 * malformed frame (a bad length prefix included) gets ERROR and that stream
 * is aborted, nothing else. Hidden states with NaN or ±Inf get ERROR
 * NON_FINITE_INPUT before the session's cache or any tensor op sees them.
 * What partially received frames hold is bounded over all sessions
 * (maxPartialFrameBytes; past it ERROR OVERLOADED and that stream is
 * aborted) and given back as soon as their stream ends.
 * Where the layers' weights come from is the caller's business.
 * Sessions arrive over /bly/infer/1.0.0 libp2p streams or, unless disabled,
 * over direct TLS channels offered on /bly/infer-direct/1.0.0 (the server
 * owns the DirectChannelServer); both run the same session code.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { FrameStream } from '../net/frame-stream.ts'
import { INFER_PROTOCOL, INFER_WIRE_VERSION, InferErrorCode, OpenFlags, ResultKind, TensorDtype, f32Tensor, tensorF32 } from '../protocols/infer.ts'
import { STAGE_SERVER_DEFAULTS } from './constants.ts'
import { DIRECT_OFFER_PROTOCOL, answerDirectOffer, createDirectChannelServer } from './direct-channel/index.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { firstNonFinite } from './finite.ts'
import { PartialFrameBudget } from './frame-budget.ts'
import { inferFrameCodec } from './infer-frames.ts'
import { logitsData } from './stage-layers.ts'
import { SessionState, StageSession, cachePositionsFor } from './stage-session.ts'
import { runsBefore } from './step-order.ts'
import type { DirectChannel, DirectChannelServer, DirectChannelServerInit } from './direct-channel/index.ts'
import type { StageFaults } from './fault-injection.ts'
import type { InferChannel, InferChannelHandlers } from './infer-channel.ts'
import type { StageLayers } from './stage-layers.ts'
import type { StageJob } from './stage-session.ts'
import type { ForwardFrame, InferFrame, OpenFrame, TruncateFrame } from '../protocols/infer.ts'
import type { Connection, Libp2p, Logger, Stream } from '@libp2p/interface'

export interface StageServerInit {
  /** the model id clients name in OPEN (e.g. the chain's model manifest id, hex) */
  modelId: string
  /** the layers served; the server never disposes them */
  layers: StageLayers
  protocol?: string
  maxSessions?: number
  maxCachePositions?: number
  defaultMaxLength?: number
  idleTimeoutMs?: number
  maxFrameBytes?: number
  /** bytes partially received frames may hold over all streams and channels (>= maxFrameBytes) */
  maxPartialFrameBytes?: number
  maxQueuedSteps?: number
  maxInboundStreams?: number
  openTimeoutMs?: number
  /** a queued step gains one priority level per this many ms it waits (anti-starvation) */
  priorityAgingMs?: number
  /**
   * admission by priority: the share of maxSessions and maxCachePositions
   * sessions of priority 0, 1, 2 (background, batch, interactive) may fill;
   * higher priorities use the whole. An idle stage admits anyone.
   */
  admitShare?: readonly number[]
  /**
   * The direct TLS data channel (docs/transport.md): false = libp2p streams
   * only; else the channel server's options (bind host, port, advertised
   * host...), default {} = bound to 127.0.0.1 on an ephemeral port
   */
  directChannel?: false | Omit<DirectChannelServerInit, 'handler' | 'frameBudget'>
  /** FAULT INJECTION FOR TESTS ONLY (see fault-injection.ts); absent = a well-behaved stage */
  faults?: StageFaults
}

export interface StageServerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'logger'>
}

/** Counters and gauges for status output and node records. */
export interface StageStats {
  modelId: string
  start: number
  end: number
  /** sessions open now, and the most allowed */
  sessions: number
  maxSessions: number
  /**
   * cache positions reserved by open sessions, still free, and the bound
   * (maxCachePositions), in whole-span positions: a session over k of the
   * span's n layers reserves ceil(maxLength x k / n)
   */
  reservedPositions: number
  freePositions: number
  maxCachePositions: number
  /** the most sessions open and cache positions reserved at any time since start */
  peakSessions: number
  peakReservedPositions: number
  /** steps queued and not computing yet, over all sessions */
  queuedSteps: number
  /** the same in whole-span steps: a step of a session over k of the span's n layers counts k / n */
  queuedSpanSteps: number
  /** more sessions of the default length that would be accepted now (session slots and cache room both) */
  freeSessions: number
  opened: number
  /** channels (sessions) that arrived over a direct TLS channel rather than a libp2p stream */
  direct: number
  /** OPENs answered BUSY */
  busy: number
  /** OPENs refused with ERROR (wrong model / range / too long) */
  rejected: number
  /** sessions ended by CLOSE or by the client closing its stream */
  closed: number
  /** sessions dropped by the idle timeout */
  expired: number
  /** FORWARD steps computed, positions in them, and the milliseconds spent computing */
  steps: number
  positions: number
  computeMs: number
  /** of those, the one-position steps (decode) and their milliseconds */
  decodeSteps: number
  decodeMs: number
  /** steps answered ERROR */
  errors: number
  /** of those, FORWARDs refused for NaN or ±Inf in their hidden states (nothing computed, cache untouched) */
  nonFinite: number
  /** streams aborted for a frame that did not decode or broke the protocol */
  malformed: number
  /**
   * bytes held now by frames being received (each counted at its declared
   * length), the most held at any time, and the bound (maxPartialFrameBytes)
   */
  partialFrameBytes: number
  peakPartialFrameBytes: number
  maxPartialFrameBytes: number
  /** frames refused (ERROR OVERLOADED, stream aborted) because they did not fit that bound */
  partialFramesRefused: number
}

type Required2 = Required<Omit<StageServerInit, 'layers' | 'modelId' | 'faults' | 'directChannel'>>

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export class StageServer {
  readonly modelId: string
  readonly layers: StageLayers
  private readonly libp2p: StageServerComponents['libp2p']
  private readonly init: Required2
  private readonly log: Logger
  private readonly faults?: StageFaults
  private readonly direct?: DirectChannelServer
  private readonly sessions: Set<StageSession>
  /** what partially received frames hold over every stream and direct channel */
  private readonly frameBudget: PartialFrameBudget
  private readonly counters: Omit<StageStats, 'modelId' | 'start' | 'end' | 'sessions' | 'maxSessions' | 'reservedPositions' | 'freePositions' | 'maxCachePositions' | 'queuedSteps' | 'queuedSpanSteps' | 'freeSessions' | 'partialFrameBytes' | 'peakPartialFrameBytes' | 'maxPartialFrameBytes' | 'partialFramesRefused'>
  private reserved: number
  private ticket: number
  private running?: Promise<void>
  private started: boolean

  constructor (components: StageServerComponents, init: StageServerInit) {
    this.libp2p = components.libp2p
    this.modelId = init.modelId
    this.layers = init.layers
    const d = STAGE_SERVER_DEFAULTS
    this.init = {
      protocol: init.protocol ?? INFER_PROTOCOL,
      maxSessions: init.maxSessions ?? d.maxSessions,
      maxCachePositions: init.maxCachePositions ?? d.maxCachePositions,
      defaultMaxLength: Math.min(init.defaultMaxLength ?? d.defaultMaxLength, init.layers.config.maxPositionEmbeddings),
      idleTimeoutMs: init.idleTimeoutMs ?? d.idleTimeoutMs,
      maxFrameBytes: init.maxFrameBytes ?? d.maxFrameBytes,
      maxPartialFrameBytes: init.maxPartialFrameBytes ?? d.maxPartialFrameBytes,
      maxQueuedSteps: init.maxQueuedSteps ?? d.maxQueuedSteps,
      maxInboundStreams: init.maxInboundStreams ?? d.maxInboundStreams,
      openTimeoutMs: init.openTimeoutMs ?? d.openTimeoutMs,
      priorityAgingMs: init.priorityAgingMs ?? d.priorityAgingMs,
      admitShare: init.admitShare ?? d.admitShare
    }
    for (const k of ['maxSessions', 'maxCachePositions', 'defaultMaxLength', 'idleTimeoutMs', 'maxFrameBytes', 'maxPartialFrameBytes', 'maxQueuedSteps', 'maxInboundStreams', 'openTimeoutMs', 'priorityAgingMs'] as const) {
      if (!Number.isSafeInteger(this.init[k]) || this.init[k] < 1) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `${k} must be a positive integer, got ${this.init[k]}`)
      }
    }
    if (this.init.maxPartialFrameBytes < this.init.maxFrameBytes) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `maxPartialFrameBytes (${this.init.maxPartialFrameBytes}) must hold one frame of maxFrameBytes (${this.init.maxFrameBytes})`)
    }
    if (this.layers.end <= this.layers.start) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `a stage needs at least one layer, got [${this.layers.start}, ${this.layers.end})`)
    }
    this.log = components.libp2p.logger.forComponent('bly:stage-server')
    this.faults = init.faults
    this.frameBudget = new PartialFrameBudget(this.init.maxPartialFrameBytes)
    if (init.directChannel !== false) {
      this.direct = createDirectChannelServer({
        maxFrameBytes: this.init.maxFrameBytes,
        ...init.directChannel,
        frameBudget: this.frameBudget,
        handler: (channel, remotePeer) => { this.acceptDirect(channel, remotePeer) }
      })
    }
    this.sessions = new Set()
    this.counters = { peakSessions: 0, peakReservedPositions: 0, opened: 0, direct: 0, busy: 0, rejected: 0, closed: 0, expired: 0, steps: 0, positions: 0, computeMs: 0, decodeSteps: 0, decodeMs: 0, errors: 0, nonFinite: 0, malformed: 0 }
    this.reserved = 0
    this.ticket = 0
    this.started = false
  }

  get protocol (): string {
    return this.init.protocol
  }

  isStarted (): boolean {
    return this.started
  }

  /** Port of the direct channel's TLS server (undefined when disabled or stopped). */
  get directChannelPort (): number | undefined {
    return this.direct?.isStarted === true ? this.direct.listenPort : undefined
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    this.started = true
    if (this.faults != null) {
      this.log.error('FAULT INJECTION ON (tests only): %o', this.faults)
    }
    try {
      await this.libp2p.handle(this.init.protocol, (stream, connection) => {
        this.accept(stream, connection)
      }, { maxInboundStreams: this.init.maxInboundStreams })
      const direct = this.direct
      if (direct != null && await this.startDirect(direct)) {
        await this.libp2p.handle(DIRECT_OFFER_PROTOCOL, async (stream, connection) => {
          // the offer (PSK + token) goes only over this Noise-authenticated stream
          await answerDirectOffer(stream, direct, connection.remotePeer.toString(), { signal: AbortSignal.timeout(this.init.openTimeoutMs) })
            .catch((err: Error) => { this.log('direct offer to %p failed - %s', connection.remotePeer, err.message) })
        }, { maxInboundStreams: this.init.maxInboundStreams })
      }
    } catch (err) {
      this.started = false
      await this.libp2p.unhandle(this.init.protocol).catch(() => {})
      await this.direct?.stop().catch(() => {})
      throw err
    }
  }

  /** Starts the channel server; one that cannot bind (port taken...) leaves the stage on libp2p streams (clients fall back). */
  private async startDirect (direct: DirectChannelServer): Promise<boolean> {
    try {
      await direct.start()
      return true
    } catch (err) {
      this.log.error('direct channel not started, serving over libp2p streams only - %s', errorMessage(err))
      return false
    }
  }

  /** Stops accepting streams, tells every open session SHUTTING_DOWN, waits for the step computing now, frees every cache. */
  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    await this.libp2p.unhandle(this.init.protocol).catch(() => {})
    if (this.direct != null) {
      await this.libp2p.unhandle(DIRECT_OFFER_PROTOCOL).catch(() => {})
    }
    const sessions = [...this.sessions]
    await Promise.allSettled(sessions.map(async s => this.fail(s, InferErrorCode.SHUTTING_DOWN, 0, 'stage is shutting down', false)))
    await this.running?.catch(() => {})
    await this.direct?.stop()
  }

  get stats (): StageStats {
    let open = 0
    let queued = 0
    let spanSteps = 0
    for (const s of this.sessions) {
      if (s.state === SessionState.OPEN) {
        open++
        queued += s.jobs.length
        spanSteps += s.jobs.length * s.layerShare
      }
    }
    return {
      modelId: this.modelId,
      start: this.layers.start,
      end: this.layers.end,
      sessions: open,
      maxSessions: this.init.maxSessions,
      reservedPositions: this.reserved,
      freePositions: this.init.maxCachePositions - this.reserved,
      maxCachePositions: this.init.maxCachePositions,
      queuedSteps: queued,
      queuedSpanSteps: spanSteps,
      freeSessions: this.started ? Math.max(0, Math.min(this.init.maxSessions - open, Math.floor((this.init.maxCachePositions - this.reserved) / this.init.defaultMaxLength))) : 0,
      ...this.counters,
      partialFrameBytes: this.frameBudget.held,
      peakPartialFrameBytes: this.frameBudget.peak,
      maxPartialFrameBytes: this.frameBudget.limit,
      partialFramesRefused: this.frameBudget.refused
    }
  }

  private accept (stream: Stream, connection: Connection): void {
    if (!this.started) {
      stream.abort(new PipelineError(PipelineErrorCode.NOT_STARTED, 'stage server stopped'))
      return
    }
    const { handlers, bind } = this.sessionFor(connection.remotePeer.toString())
    // handlers fire on a later tick: the session is bound before any frame arrives
    bind(new FrameStream(stream, { codec: inferFrameCodec, maxFrameBytes: this.init.maxFrameBytes, frameBudget: this.frameBudget, ...handlers }))
  }

  /** A direct channel the channel server accepted for an offer issued to `remotePeer`. */
  private acceptDirect (channel: DirectChannel, remotePeer: string): void {
    if (!this.started) {
      channel.abort(new PipelineError(PipelineErrorCode.NOT_STARTED, 'stage server stopped'))
      return
    }
    this.counters.direct++
    const { handlers, bind } = this.sessionFor(remotePeer)
    bind(channel)
    channel.attach(handlers)
  }

  /**
   * The per-session code, whatever carries the frames: the handlers to give
   * the channel, and `bind` to call with the channel before it delivers any.
   */
  private sessionFor (remotePeer: string): { handlers: InferChannelHandlers, bind(frames: InferChannel): void } {
    const ref: { session?: StageSession } = {}
    const handlers: InferChannelHandlers = {
      onFrame: (frame) => {
        if (ref.session != null) {
          this.onFrame(ref.session, frame)
        }
      },
      onBadFrame: (err) => {
        if (ref.session == null) {
          return
        }
        // the channel stopped reading and dropped what it was receiving; the session ends now
        if (err instanceof PipelineError && err.code === PipelineErrorCode.PARTIAL_FRAMES_FULL) {
          void this.fail(ref.session, InferErrorCode.OVERLOADED, 0, errorMessage(err), true)
          return
        }
        this.counters.malformed++
        void this.fail(ref.session, InferErrorCode.BAD_FRAME, 0, errorMessage(err), true)
      },
      onClose: () => {
        if (ref.session != null) {
          if (ref.session.state === SessionState.OPEN) {
            this.counters.closed++
          }
          this.release(ref.session)
        }
      }
    }
    const bind = (frames: InferChannel): void => {
      const s = new StageSession(frames, remotePeer)
      ref.session = s
      this.sessions.add(s)
      s.arm(this.init.openTimeoutMs, () => {
        if (s.state === SessionState.AWAITING_OPEN) {
          this.counters.malformed++
          void this.fail(s, InferErrorCode.NOT_OPEN, 0, `no OPEN within ${this.init.openTimeoutMs} ms`, true)
        }
      })
    }
    return { handlers, bind }
  }

  private onFrame (s: StageSession, frame: InferFrame): void {
    if (s.state === SessionState.CLOSED) {
      return
    }
    if (s.state === SessionState.AWAITING_OPEN) {
      if (frame.type !== 'open') {
        this.counters.malformed++
        void this.fail(s, InferErrorCode.NOT_OPEN, 0, `expected OPEN, got ${frame.type.toUpperCase()}`, true)
        return
      }
      this.open(s, frame)
      return
    }
    switch (frame.type) {
      case 'forward':
      case 'truncate':
        if (frame.sessionId !== s.sessionId) {
          this.counters.malformed++
          void this.fail(s, InferErrorCode.NOT_OPEN, frame.seq, `session ${frame.sessionId} is not open on this stream`, true)
          return
        }
        if (s.jobs.length >= this.init.maxQueuedSteps) {
          this.counters.malformed++
          void this.fail(s, InferErrorCode.OVERLOADED, frame.seq, `more than ${this.init.maxQueuedSteps} steps queued`, true)
          return
        }
        s.jobs.push({ job: frame, ticket: this.ticket++, queuedAt: performance.now() })
        this.armIdle(s)
        this.schedule()
        return
      case 'close':
        this.counters.closed++
        this.release(s)
        void s.frames.close()
        return
      default:
        this.counters.malformed++
        void this.fail(s, InferErrorCode.BAD_REQUEST, 0, `unexpected ${frame.type.toUpperCase()} frame from a client`, true)
    }
  }

  private open (s: StageSession, frame: OpenFrame): void {
    const reject = (code: InferErrorCode, message: string): void => {
      this.counters.rejected++
      void this.fail(s, code, 0, message, false)
    }
    const { config, start, end } = this.layers
    if (frame.version !== INFER_WIRE_VERSION) {
      reject(InferErrorCode.UNSUPPORTED_VERSION, `wire version ${frame.version} is not ${INFER_WIRE_VERSION}`)
      return
    }
    if (frame.modelId !== this.modelId) {
      reject(InferErrorCode.WRONG_MODEL, `this stage serves model ${this.modelId}, not ${frame.modelId}`)
      return
    }
    if (frame.start < start || frame.end > end || frame.start >= frame.end) {
      reject(InferErrorCode.WRONG_RANGE, `this stage holds layers [${start}, ${end}): [${frame.start}, ${frame.end}) is not a non-empty part of them`)
      return
    }
    if ((frame.flags & OpenFlags.LOGITS) !== 0 && (!this.layers.hasHead || frame.end !== end)) {
      reject(InferErrorCode.WRONG_RANGE, this.layers.hasHead ? `logits come after layer ${end - 1}, the session ends at ${frame.end}` : 'this stage does not hold the head')
      return
    }
    const maxLength = frame.maxLength === 0 ? this.init.defaultMaxLength : frame.maxLength
    if (maxLength > this.init.defaultMaxLength) {
      reject(InferErrorCode.TOO_LONG, `at most ${this.init.defaultMaxLength} positions per session, asked for ${maxLength}`)
      return
    }
    const open = this.stats.sessions
    // lower priorities fill only their share, so urgent sessions find room (an idle stage admits anyone)
    const share = open === 0 ? 1 : Math.min(1, this.init.admitShare[frame.priority] ?? 1)
    const sessionRoom = Math.floor(this.init.maxSessions * share)
    const cacheRoom = Math.floor(this.init.maxCachePositions * share)
    const layerShare = (frame.end - frame.start) / (end - start)
    const cost = cachePositionsFor(maxLength, layerShare)
    if (!this.started || open >= sessionRoom || this.reserved + cost > cacheRoom || this.reserved + cost > this.init.maxCachePositions) {
      this.counters.busy++
      this.release(s)
      const of = share < 1 ? ` (priority ${frame.priority} may fill ${Math.round(share * 100)}%)` : ''
      const why = open >= sessionRoom
        ? `${open} of ${this.init.maxSessions} sessions in use${of}`
        : `${Math.max(0, cacheRoom - this.reserved)} cache positions free, ${cost} asked for${of}`
      s.frames.send({ type: 'busy', sessionId: frame.sessionId, retryAfterMs: 0, message: why })
        .then(async () => s.frames.close())
        .catch(() => s.frames.abort(new PipelineError(PipelineErrorCode.BUSY, why)))
      return
    }
    s.state = SessionState.OPEN
    s.sessionId = frame.sessionId
    s.priority = frame.priority
    s.flags = frame.flags
    s.maxLength = maxLength
    s.layerShare = layerShare
    s.kv = this.layers.createSession({ start: frame.start, end: frame.end })
    this.reserved += cost
    this.counters.opened++
    this.counters.peakReservedPositions = Math.max(this.counters.peakReservedPositions, this.reserved)
    this.counters.peakSessions = Math.max(this.counters.peakSessions, open + 1)
    this.armIdle(s)
    s.frames.send({ type: 'open-ok', sessionId: frame.sessionId, maxLength, hiddenSize: config.hiddenSize }).catch(() => {})
  }

  private armIdle (s: StageSession): void {
    s.arm(this.init.idleTimeoutMs, () => {
      if (s.state !== SessionState.OPEN) {
        return
      }
      if (s.busy || s.jobs.length > 0) {
        this.armIdle(s)
        return
      }
      this.counters.expired++
      void this.fail(s, InferErrorCode.EXPIRED, 0, `session idle for ${this.init.idleTimeoutMs} ms; its cache was freed`, false)
    })
  }

  /** Ends a session with an ERROR frame: aborts the stream when `abort`, else closes it after the frame went out. */
  private async fail (s: StageSession, code: InferErrorCode, seq: number, message: string, abort: boolean): Promise<void> {
    this.release(s)
    const err = new PipelineError(code === InferErrorCode.BAD_FRAME ? PipelineErrorCode.BAD_FRAME : PipelineErrorCode.REMOTE, message, { remoteCode: code })
    try {
      await s.frames.send({ type: 'error', code, seq, message })
      if (abort) {
        s.frames.abort(err)
      } else {
        await s.frames.close()
      }
    } catch {
      s.frames.abort(err)
    }
  }

  /**
   * Ends a session on this stage: its cache room and slot are free when this
   * returns, and its channel delivers nothing more (what it was receiving is
   * dropped now, not when a last ERROR / BUSY has gone out).
   */
  private release (s: StageSession): void {
    if (!this.sessions.has(s)) {
      return
    }
    this.sessions.delete(s)
    s.frames.stopReading()
    if (s.state === SessionState.OPEN) {
      this.reserved -= s.reserved
    }
    s.release()
  }

  /** The next job: highest priority first, aged by its wait (step-order.ts), then the oldest. */
  private pick (): StageSession | undefined {
    const agingMs = this.init.priorityAgingMs
    let best: StageSession | undefined
    for (const s of this.sessions) {
      if (s.state !== SessionState.OPEN || s.jobs.length === 0) {
        continue
      }
      if (best == null || runsBefore({ priority: s.priority, ...s.jobs[0] }, { priority: best.priority, ...best.jobs[0] }, agingMs)) {
        best = s
      }
    }
    return best
  }

  private schedule (): void {
    if (this.running != null) {
      return
    }
    const s = this.pick()
    if (s == null) {
      return
    }
    const { job } = s.jobs.shift() as { job: StageJob }
    s.busy = true
    this.running = this.run(s, job)
      .catch((err) => {
        this.log.error('step failed - %e', err)
      })
      .finally(() => {
        s.busy = false
        if (s.state === SessionState.CLOSED) {
          s.kv?.dispose()
          s.kv = null
        } else {
          this.armIdle(s)
        }
        this.running = undefined
        this.schedule()
      })
  }

  private async run (s: StageSession, job: StageJob): Promise<void> {
    try {
      if (job.type === 'truncate') {
        this.truncate(s, job)
      } else {
        await this.forward(s, job)
      }
    } catch (err) {
      if (s.state !== SessionState.OPEN) {
        return
      }
      this.counters.errors++
      let code: InferErrorCode = InferErrorCode.INTERNAL
      let message = 'internal error'
      if (err instanceof PipelineError && err.remoteCode != null) {
        code = err.remoteCode as InferErrorCode
        message = err.message
      } else if (err instanceof ModelError && err.code === ModelErrorCode.BAD_INPUT) {
        code = InferErrorCode.BAD_REQUEST
        message = err.message
      } else {
        this.log.error('session %d step %d failed - %e', s.sessionId, job.seq, err)
      }
      if (job.type === 'truncate') {
        // client and stage disagree on the cache: the session cannot go on
        void this.fail(s, code, job.seq, message, false)
        return
      }
      s.frames.send({ type: 'error', code, seq: job.seq, message }).catch(() => {})
    }
  }

  private truncate (s: StageSession, job: TruncateFrame): void {
    const kv = s.kv
    if (kv == null) {
      return
    }
    if (job.length > kv.length) {
      throw stepError(InferErrorCode.BAD_REQUEST, `cannot truncate ${kv.length} cached positions to ${job.length}`)
    }
    kv.truncate(job.length)
  }

  private async forward (s: StageSession, job: ForwardFrame): Promise<void> {
    const kv = s.kv
    if (kv == null) {
      return
    }
    const { tensor, startPos, seq } = job
    const { hiddenSize, vocabSize } = this.layers.config
    if (tensor.dtype !== TensorDtype.F32) {
      throw stepError(InferErrorCode.UNSUPPORTED_DTYPE, `dtype ${tensor.dtype} is not served (f32 only)`)
    }
    if (tensor.cols !== hiddenSize) {
      throw stepError(InferErrorCode.BAD_REQUEST, `hidden size ${tensor.cols} is not the model's ${hiddenSize}`)
    }
    if (startPos > kv.length) {
      throw stepError(InferErrorCode.BAD_REQUEST, `startPos ${startPos} is past the ${kv.length} cached positions`)
    }
    if (startPos + tensor.rows > s.maxLength) {
      throw stepError(InferErrorCode.TOO_LONG, `positions up to ${startPos + tensor.rows} exceed the session's ${s.maxLength}`)
    }
    // before the cache (a rewind included) or any tensor op sees them: NaN / Inf would poison the cache for good
    const x = tensorF32(tensor)
    const bad = firstNonFinite(x)
    if (bad >= 0) {
      this.counters.nonFinite++
      throw stepError(InferErrorCode.NON_FINITE_INPUT, `hidden state ${x[bad]} at row ${startPos + Math.floor(bad / hiddenSize)}, column ${bad % hiddenSize}: a step's input must be finite`)
    }
    const t0 = performance.now()
    let out = await this.layers.forwardData(kv, x, startPos)
    let rows = tensor.rows
    let cols = hiddenSize
    let kind: ResultKind = ResultKind.HIDDEN
    if ((s.flags & OpenFlags.LOGITS) !== 0) {
      const from = (s.flags & OpenFlags.ALL_ROWS) !== 0 ? 0 : rows - 1
      out = await logitsData(this.layers, out, rows, hiddenSize, from)
      rows -= from
      cols = vocabSize
      kind = ResultKind.LOGITS
    }
    const ms = performance.now() - t0
    this.counters.computeMs += ms
    if (tensor.rows === 1) {
      this.counters.decodeSteps++
      this.counters.decodeMs += ms
    }
    this.counters.steps++
    this.counters.positions += tensor.rows
    if (this.faults != null) {
      out = await this.injectFaults(out)
    }
    if (s.state !== SessionState.OPEN) {
      return
    }
    s.frames.send({ type: 'result', sessionId: s.sessionId, seq, startPos, kind, tensor: f32Tensor(out, rows, cols) }).catch(() => {})
  }

  /** FAULT INJECTION FOR TESTS ONLY: delay and/or NaN-fill a RESULT. */
  private async injectFaults (out: Float32Array): Promise<Float32Array> {
    const { stepDelayMs, corruptFromStep } = this.faults ?? {}
    if (stepDelayMs != null) {
      await sleep(stepDelayMs)
    }
    if (corruptFromStep != null && this.counters.steps >= corruptFromStep) {
      return new Float32Array(out.length).fill(NaN)
    }
    return out
  }
}

/** A step refused for a reason the client should hear (carries the wire code). */
function stepError (code: InferErrorCode, message: string): PipelineError {
  return new PipelineError(PipelineErrorCode.REMOTE, message, { remoteCode: code })
}

export function createStageServer (components: StageServerComponents, init: StageServerInit): StageServer {
  return new StageServer(components, init)
}
