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
 *
 * The server wires four collaborators, each with one job: StageProtocol
 * (frames in and out, per channel), StageAdmission (sessions, cache room,
 * BUSY), StageScheduler (which queued step runs next) and StageCompute (the
 * layers), plus, in tests only, a StageFaultInjector between compute and
 * the RESULT.
 */
import { FrameStream } from '../net/frame-stream.ts'
import { INFER_PROTOCOL, InferErrorCode } from '../protocols/infer.ts'
import { STAGE_SERVER_DEFAULTS } from './constants.ts'
import { DIRECT_OFFER_PROTOCOL, answerDirectOffer, createDirectChannelServer } from './direct-channel/index.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { StageFaultInjector } from './fault-injection.ts'
import { PartialFrameBudget } from './frame-budget.ts'
import { inferFrameCodec } from './infer-frames.ts'
import { StageAdmission } from './stage-admission.ts'
import { StageCompute } from './stage-compute.ts'
import { StageProtocol } from './stage-protocol.ts'
import { StageScheduler } from './stage-scheduler.ts'
import { SessionState } from './stage-session.ts'
import type { DirectChannel, DirectChannelServer, DirectChannelServerInit } from './direct-channel/index.ts'
import type { StageFaults } from './fault-injection.ts'
import type { StageLayers } from './stage-layers.ts'
import type { StageProtocolComponents } from './stage-protocol.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'

export interface StageServerInit {
  /** the model id clients name in OPEN (e.g. the chain's model manifest id, hex) */
  modelId: string
  /**
   * the weights version `layers` are (64 hex characters, protocols/versions.md):
   * an OPEN pinning another version is refused WRONG_VERSION (absent: every
   * pinned OPEN is refused; unpinned OPENs are served either way)
   */
  weightsVersion?: string
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
  /** what takes the clients' RECEIPTs (docs/ledger.md); absent = receipts are refused (counted) */
  receipts?: StageReceipts
  /** the priority a client's session gets, at most what its OPEN asks (docs/ledger.md: a client without balance is served at background); absent = as asked */
  priorityFor?(client: string, modelId: string, requested: number): number
}

/** A session as the stage served it, for its receipt. */
export interface ServedStageSession {
  sessionId: number
  /** the model id the session opened (hex) */
  modelId: string
  /** the client's peer id */
  client: string
  /** decoder layers [start, end) the session ran */
  start: number
  end: number
  /** positions the stage ran its layers on */
  positions: number
}

/** The stage's receipt handler: checks the client-signed receipt against `served`, co-signs and keeps it; throws to refuse. */
export interface StageReceipts {
  cosign(served: ServedStageSession, body: Uint8Array, clientSig: Uint8Array): Promise<void>
}

export interface StageServerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  /** logs as bly:pipeline:stage-server */
  logger: BlyComponentLogger
}

/** Counters and gauges for status output and node records. */
export interface StageStats {
  modelId: string
  /** the weights version served, when named */
  weightsVersion?: string
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
  /** RECEIPTs co-signed, and refused */
  receipts: number
  receiptsRefused: number
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

/**
 * The protocol's ledger hooks (docs/ledger.md): the receipt hook hands a
 * session's RECEIPT to `receipts` with what the stage counted (none without
 * a handler); priorityFor as given.
 */
function ledgerHooks (init: Pick<StageServerInit, 'receipts' | 'priorityFor'>): Pick<StageProtocolComponents, 'receipt' | 'priorityFor'> {
  const { receipts, priorityFor } = init
  const hooks: Pick<StageProtocolComponents, 'receipt' | 'priorityFor'> = priorityFor != null ? { priorityFor } : {}
  if (receipts == null) {
    return hooks
  }
  return {
    ...hooks,
    receipt: async (s, frame) => {
      if (s.opened == null) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'a RECEIPT for a session that was never opened')
      }
      await receipts.cosign({ sessionId: s.sessionId, modelId: s.opened.modelId, client: s.remotePeer, start: s.opened.start, end: s.opened.end, positions: s.positions, ...(s.opened.weightsVersion != null ? { version: s.opened.weightsVersion } : {}) }, frame.body, frame.clientSig)
    }
  }
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** `v` when it is a weights version id (64 lowercase hex characters) or undefined; else ERR_INVALID_ARGUMENT. */
function checkedWeightsVersion (v: string | undefined): string | undefined {
  if (v != null && !/^[0-9a-f]{64}$/.test(v)) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `weightsVersion must be 64 lowercase hex characters, got ${JSON.stringify(v)}`)
  }
  return v
}

type ServerOptions = Required<Omit<StageServerInit, 'layers' | 'modelId' | 'faults' | 'directChannel' | 'weightsVersion' | 'receipts' | 'priorityFor'>>

export class StageServer {
  readonly modelId: string
  readonly weightsVersion?: string
  readonly layers: StageLayers
  private readonly libp2p: StageServerComponents['libp2p']
  private readonly init: ServerOptions
  private readonly log: BlyLogger
  private readonly faults?: StageFaults
  private readonly direct?: DirectChannelServer
  /** what partially received frames hold over every stream and direct channel */
  private readonly frameBudget: PartialFrameBudget
  private readonly admission: StageAdmission
  private readonly scheduler: StageScheduler
  private readonly compute: StageCompute
  private readonly protocolHandler: StageProtocol
  /** channels (sessions) that arrived over a direct TLS channel */
  private directAccepted: number
  private ticket: number
  private started: boolean

  constructor (components: StageServerComponents, init: StageServerInit) {
    this.libp2p = components.libp2p
    this.modelId = init.modelId
    this.weightsVersion = checkedWeightsVersion(init.weightsVersion)
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
    this.log = components.logger.forComponent('bly:pipeline:stage-server')
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
    this.admission = new StageAdmission({ layers: this.layers, isStarted: () => this.started }, { modelId: this.modelId, weightsVersion: this.weightsVersion, ...this.init })
    this.compute = new StageCompute({ layers: this.layers, ...(this.faults != null ? { faults: new StageFaultInjector(this.faults) } : {}) })
    this.scheduler = new StageScheduler({
      sessions: () => this.admission.sessions,
      run: async (s, job) => this.protocolHandler.run(s, job),
      afterStep: (s) => { this.protocolHandler.afterStep(s) },
      log: this.log
    }, this.init)
    this.protocolHandler = new StageProtocol({
      admission: this.admission,
      compute: this.compute,
      schedule: () => { this.scheduler.schedule() },
      nextTicket: () => this.ticket++,
      log: this.log,
      ...ledgerHooks(init)
    }, this.init)
    this.directAccepted = 0
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
      this.log.warn('direct channel not started, serving over libp2p streams only - %s', errorMessage(err))
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
    const sessions = [...this.admission.sessions]
    await Promise.allSettled(sessions.map(async s => this.protocolHandler.fail(s, InferErrorCode.SHUTTING_DOWN, 0, 'stage is shutting down', false)))
    await this.scheduler.idle()
    await this.direct?.stop()
  }

  get stats (): StageStats {
    let open = 0
    let queued = 0
    let spanSteps = 0
    for (const s of this.admission.sessions) {
      if (s.state === SessionState.OPEN) {
        open++
        queued += s.jobs.length
        spanSteps += s.jobs.length * s.layerShare
      }
    }
    const reserved = this.admission.reserved
    return {
      modelId: this.modelId,
      ...(this.weightsVersion != null ? { weightsVersion: this.weightsVersion } : {}),
      start: this.layers.start,
      end: this.layers.end,
      sessions: open,
      maxSessions: this.init.maxSessions,
      reservedPositions: reserved,
      freePositions: this.init.maxCachePositions - reserved,
      maxCachePositions: this.init.maxCachePositions,
      queuedSteps: queued,
      queuedSpanSteps: spanSteps,
      freeSessions: this.started ? Math.max(0, Math.min(this.init.maxSessions - open, Math.floor((this.init.maxCachePositions - reserved) / this.init.defaultMaxLength))) : 0,
      ...this.admission.counters,
      direct: this.directAccepted,
      ...this.protocolHandler.counters,
      ...this.compute.counters,
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
    const { handlers, bind } = this.protocolHandler.sessionFor(connection.remotePeer.toString())
    // handlers fire on a later tick: the session is bound before any frame arrives
    bind(new FrameStream(stream, { codec: inferFrameCodec, maxFrameBytes: this.init.maxFrameBytes, frameBudget: this.frameBudget, ...handlers }))
  }

  /** A direct channel the channel server accepted for an offer issued to `remotePeer`. */
  private acceptDirect (channel: DirectChannel, remotePeer: string): void {
    if (!this.started) {
      channel.abort(new PipelineError(PipelineErrorCode.NOT_STARTED, 'stage server stopped'))
      return
    }
    this.directAccepted++
    const { handlers, bind } = this.protocolHandler.sessionFor(remotePeer)
    bind(channel)
    channel.attach(handlers)
  }
}

export function createStageServer (components: StageServerComponents, init: StageServerInit): StageServer {
  return new StageServer(components, init)
}
