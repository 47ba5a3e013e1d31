/**
 * The client end of one /bly/infer/1.0.0 session on one stage: dials the
 * stage, OPENs, then sends FORWARD / TRUNCATE frames and matches RESULT /
 * ERROR frames to steps by seq. Several steps may be in flight; the stage
 * answers them in order.
 *
 * Frames go over a direct TLS channel when the stage offers one (asked for
 * over the authenticated libp2p connection on /bly/infer-direct/1.0.0), and
 * over a /bly/infer/1.0.0 libp2p stream when it does not, or when the channel
 * cannot be set up in time (older stage, firewall, NAT, refused offer).
 */
import { FrameStream } from '../net/frame-stream.ts'
import { INFER_PROTOCOL, INFER_WIRE_VERSION, InferErrorCode, f32Tensor, tensorF32 } from '../protocols/infer.ts'
import { PIPELINE_CLIENT_DEFAULTS } from './constants.ts'
import { DIRECT_OFFER_PROTOCOL, connectDirectChannel, requestDirectOffer } from './direct-channel/index.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { InferTransport } from './infer-channel.ts'
import { inferFrameCodec } from './infer-frames.ts'
import type { InferChannel, InferChannelHandlers, InferTransportValue } from './infer-channel.ts'
import type { InferFrame, ResultKind } from '../protocols/infer.ts'
import type { AbortOptions, Connection, Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface StageClientInit {
  libp2p: Pick<Libp2p, 'dial'>
  /** the stage: a peer id (addresses already known to the peer store) or multiaddrs ending in /p2p/<id> */
  peer: PeerId | Multiaddr | Multiaddr[]
  modelId: string
  /** pin the session to this weights version (64 hex characters): a stage serving another refuses with WRONG_VERSION */
  weightsVersion?: string
  start: number
  end: number
  sessionId: number
  /** OpenFlags */
  flags?: number
  maxLength?: number
  priority?: number
  protocol?: string
  openTimeoutMs?: number
  stepTimeoutMs?: number
  maxFrameBytes?: number
  /** try a direct TLS channel first (default true); false = the libp2p stream only */
  directChannel?: boolean
  /** the offer + TLS setup must finish within this long, else the libp2p stream is used */
  directTimeoutMs?: number
  /** index of this stage in the route (for error messages) */
  stage?: number
  signal?: AbortSignal
}

/** Options of one step: the deadline (stepTimeoutMs when absent) and the caller's abort signal. */
export interface StepOptions extends AbortOptions {
  timeoutMs?: number
}

export interface StageResult {
  seq: number
  startPos: number
  kind: ResultKind
  rows: number
  cols: number
  data: Float32Array
}

interface Pending {
  resolve(r: StageResult): void
  reject(err: Error): void
  timer?: ReturnType<typeof setTimeout>
  cleanup(): void
}

export class StageClient {
  readonly sessionId: number
  readonly start: number
  readonly end: number
  /** positions the stage granted */
  maxLength: number
  /** positions the stage ran for this session: rows of the RESULTs received (what its receipt claims) */
  positions: number
  /** what the frames travel over */
  readonly transport: InferTransportValue
  private readonly frames: InferChannel
  private readonly stage?: number
  private readonly stepTimeoutMs: number
  private readonly pending: Map<number, Pending>
  private opened?: { resolve(): void, reject(err: Error): void }
  private nextSeq: number
  private failure?: Error

  private constructor (frames: InferChannel, transport: InferTransportValue, init: StageClientInit) {
    this.sessionId = init.sessionId
    this.start = init.start
    this.end = init.end
    this.maxLength = 0
    this.positions = 0
    this.stage = init.stage
    this.stepTimeoutMs = init.stepTimeoutMs ?? PIPELINE_CLIENT_DEFAULTS.stepTimeoutMs
    this.pending = new Map()
    this.nextSeq = 1
    this.frames = frames
    this.transport = transport
  }

  private onBadFrame (err: Error): void {
    this.failAll(err)
    this.frames.abort(err)
  }

  private onChannelClose (err?: Error): void {
    this.failAll(this.failure ?? new PipelineError(PipelineErrorCode.STREAM_CLOSED, `stage ${this.label} closed the stream${err != null ? `: ${err.message}` : ''}`, { stage: this.stage, cause: err }))
  }

  /** Dials the stage and OPENs the session; throws ERR_INFER_BUSY when the stage is full, ERR_INFER_REMOTE when it refuses. */
  static async open (init: StageClientInit): Promise<StageClient> {
    const timeoutMs = init.openTimeoutMs ?? PIPELINE_CLIENT_DEFAULTS.openTimeoutMs
    const signal = init.signal != null ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs)
    // frames reach the client once it exists: it is built in the same tick the channel resolves
    const ref: { client?: StageClient } = {}
    const handlers: InferChannelHandlers = {
      onFrame: (frame) => { ref.client?.onFrame(frame) },
      onBadFrame: (err) => { ref.client?.onBadFrame(err) },
      onClose: (err) => { ref.client?.onChannelClose(err) }
    }
    let opened: { frames: InferChannel, transport: InferTransportValue }
    try {
      opened = await dialChannel(init, handlers, signal)
    } catch (err) {
      throw wrapAbort(err, init, `could not open a stream to stage ${init.stage ?? ''} [${init.start}, ${init.end})`)
    }
    const client = new StageClient(opened.frames, opened.transport, init)
    ref.client = client
    try {
      await client.handshake(init, signal)
    } catch (err) {
      client.frames.abort(err as Error)
      throw wrapAbort(err, init, 'OPEN failed')
    }
    return client
  }

  get label (): string {
    return `${this.stage ?? '?'} [${this.start}, ${this.end})`
  }

  get isOpen (): boolean {
    return this.failure == null && this.frames.isOpen
  }

  /** Steps sent and not yet answered. */
  get inFlight (): number {
    return this.pending.size
  }

  private async handshake (init: StageClientInit, signal: AbortSignal): Promise<void> {
    const opened = Promise.withResolvers<void>()
    this.opened = opened
    const onAbort = (): void => { opened.reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await this.frames.send({
        type: 'open',
        version: INFER_WIRE_VERSION,
        sessionId: this.sessionId,
        modelId: init.modelId,
        start: init.start,
        end: init.end,
        maxLength: init.maxLength ?? PIPELINE_CLIENT_DEFAULTS.maxLength,
        priority: init.priority ?? PIPELINE_CLIENT_DEFAULTS.priority,
        flags: init.flags ?? 0,
        ...(init.weightsVersion != null ? { weightsVersion: init.weightsVersion } : {})
      })
      await opened.promise
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.opened = undefined
    }
  }

  /** Sends hidden states [rows, cols] at startPos; resolves the stage's RESULT. */
  async forward (data: Float32Array, rows: number, cols: number, startPos: number, options: StepOptions = {}): Promise<StageResult> {
    this.assertOpen()
    const seq = this.nextSeq++
    const result = this.expect(seq, options.signal, options.timeoutMs ?? this.stepTimeoutMs)
    this.frames.send({ type: 'forward', sessionId: this.sessionId, seq, startPos, tensor: f32Tensor(data, rows, cols) })
      .catch((err: Error) => { this.settle(seq, undefined, err) })
    const r = await result
    this.positions += rows
    return r
  }

  /** Sends the session's RECEIPT (body and the client's signature; docs/ledger.md), before close(). */
  async receipt (body: Uint8Array, clientSig: Uint8Array): Promise<void> {
    this.assertOpen()
    await this.frames.send({ type: 'receipt', sessionId: this.sessionId, body, clientSig })
  }

  /** Drops cached positions from `length` on (ordered with the steps around it; errors show up on the next step). */
  async truncate (length: number): Promise<void> {
    this.assertOpen()
    await this.frames.send({ type: 'truncate', sessionId: this.sessionId, seq: this.nextSeq++, length })
  }

  /** CLOSE the session and close the stream (idempotent, never throws). */
  async close (): Promise<void> {
    this.failAll(new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'session closed', { stage: this.stage }))
    if (!this.frames.isOpen) {
      return
    }
    try {
      await this.frames.send({ type: 'close', sessionId: this.sessionId })
      await this.frames.close()
    } catch (err) {
      this.frames.abort(err as Error)
    }
  }

  abort (err: Error): void {
    this.failAll(err)
    this.frames.abort(err)
  }

  private assertOpen (): void {
    if (this.failure != null) {
      throw this.failure
    }
    if (!this.frames.isOpen) {
      throw new PipelineError(PipelineErrorCode.STREAM_CLOSED, `stream to stage ${this.label} is closed`, { stage: this.stage })
    }
  }

  private async expect (seq: number, signal: AbortSignal | undefined, timeoutMs: number): Promise<StageResult> {
    const { promise, resolve, reject } = Promise.withResolvers<StageResult>()
    // the stage still computes the step and advances its cache: the session is unusable after an abort
    const onAbort = (): void => { this.abort(new PipelineError(PipelineErrorCode.ABORTED, 'step aborted', { stage: this.stage, cause: signal?.reason })) }
    const entry: Pending = {
      resolve,
      reject,
      cleanup: () => {
        if (entry.timer != null) {
          clearTimeout(entry.timer)
        }
        signal?.removeEventListener('abort', onAbort)
      }
    }
    entry.timer = setTimeout(() => {
      // what arrived while this process was busy is read first (setImmediate runs after
      // the poll phase): a blocked event loop is not the stage's fault
      setImmediate(() => {
        if (this.pending.get(seq) !== entry) {
          return
        }
        const err = new PipelineError(PipelineErrorCode.TIMEOUT, `stage ${this.label} did not answer step ${seq} within ${timeoutMs} ms`, { stage: this.stage })
        // the stream's answers are ordered: a lost one leaves the session unusable
        this.abort(err)
      })
    }, timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })
    this.pending.set(seq, entry)
    if (signal?.aborted === true) {
      onAbort()
    }
    return promise
  }

  private settle (seq: number, result?: StageResult, err?: Error): void {
    const p = this.pending.get(seq)
    if (p == null) {
      return
    }
    this.pending.delete(seq)
    p.cleanup()
    if (err != null) {
      p.reject(err)
    } else {
      p.resolve(result as StageResult)
    }
  }

  private failAll (err: Error): void {
    this.failure ??= err
    this.opened?.reject(err)
    for (const seq of [...this.pending.keys()]) {
      this.settle(seq, undefined, err)
    }
  }

  private onFrame (frame: InferFrame): void {
    switch (frame.type) {
      case 'open-ok':
        if (this.opened == null || frame.sessionId !== this.sessionId) {
          this.protocolError(`unexpected OPEN_OK for session ${frame.sessionId}`)
          return
        }
        this.maxLength = frame.maxLength
        this.opened.resolve()
        return
      case 'busy':
        this.failAll(new PipelineError(PipelineErrorCode.BUSY, `stage ${this.label} is busy: ${frame.message}`, { stage: this.stage }))
        return
      case 'error': {
        const code = frame.code === InferErrorCode.BAD_FRAME ? PipelineErrorCode.BAD_FRAME : PipelineErrorCode.REMOTE
        const err = new PipelineError(code, `stage ${this.label}: ${frame.message}`, { stage: this.stage, remoteCode: frame.code })
        if (frame.seq !== 0 && this.pending.has(frame.seq)) {
          this.settle(frame.seq, undefined, err)
        } else {
          this.failAll(err)
        }
        return
      }
      case 'result': {
        if (frame.sessionId !== this.sessionId || !this.pending.has(frame.seq)) {
          this.protocolError(`RESULT for unknown step ${frame.seq} of session ${frame.sessionId}`)
          return
        }
        const t = frame.tensor
        let data: Float32Array
        try {
          data = tensorF32(t)
        } catch (err) {
          this.protocolError((err as Error).message)
          return
        }
        this.settle(frame.seq, { seq: frame.seq, startPos: frame.startPos, kind: frame.kind, rows: t.rows, cols: t.cols, data })
        return
      }
      default:
        this.protocolError(`unexpected ${frame.type.toUpperCase()} frame from a stage`)
    }
  }

  private protocolError (message: string): void {
    const err = new PipelineError(PipelineErrorCode.BAD_FRAME, `stage ${this.label}: ${message}`, { stage: this.stage })
    this.abort(err)
  }
}

/** The IP (or DNS name) the libp2p connection reaches the stage at, for an offer that names no host. */
export function remoteHostOf (connection: Pick<Connection, 'remoteAddr'>): string | undefined {
  for (const c of connection.remoteAddr.getComponents()) {
    if (c.name === 'ip4' || c.name === 'ip6' || c.name === 'dns4' || c.name === 'dns6' || c.name === 'dns') {
      return c.value
    }
  }
  return undefined
}

/**
 * Dials the stage and opens the channel. A connection that libp2p still lists
 * as open can have a closed muxer (the remote reset it, e.g. for too many
 * streams opened while it was still upgrading the connection): every stream
 * on it fails, and every dial to the peer returns it again. Such a connection
 * is aborted, so that libp2p forgets it, and the stage is dialled once more.
 */
async function dialChannel (init: StageClientInit, handlers: InferChannelHandlers, signal: AbortSignal): Promise<{ frames: InferChannel, transport: InferTransportValue }> {
  const connection = await init.libp2p.dial(init.peer, { signal })
  try {
    return await openChannel(connection, init, handlers, signal)
  } catch (err) {
    if (signal.aborted || !isDeadConnection(err)) {
      throw err
    }
    connection.abort(err as Error)
  }
  const again = await init.libp2p.dial(init.peer, { signal })
  try {
    return await openChannel(again, init, handlers, signal)
  } catch (err) {
    if (isDeadConnection(err)) {
      again.abort(err as Error)
    }
    throw err
  }
}

/** newStream's answer when the connection, or its muxer, is closed: nothing more can be opened on it. */
function isDeadConnection (err: unknown): boolean {
  const name = (err as Error)?.name
  return name === 'ConnectionClosedError' || name === 'MuxerClosedError'
}

/** The direct channel when the stage offers one and it opens in time, else a libp2p stream. */
async function openChannel (connection: Connection, init: StageClientInit, handlers: InferChannelHandlers, signal: AbortSignal): Promise<{ frames: InferChannel, transport: InferTransportValue }> {
  const maxFrameBytes = init.maxFrameBytes ?? PIPELINE_CLIENT_DEFAULTS.maxFrameBytes
  const remoteHost = remoteHostOf(connection)
  if (init.directChannel !== false && remoteHost != null && connection.limits == null) {
    const timeoutMs = init.directTimeoutMs ?? PIPELINE_CLIENT_DEFAULTS.directTimeoutMs
    const direct = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
    try {
      const stream = await connection.newStream(DIRECT_OFFER_PROTOCOL, { signal: direct })
      const offer = await requestDirectOffer(stream, { remoteHost, signal: direct })
      const frames = await connectDirectChannel(offer, { ...handlers, maxFrameBytes, timeoutMs, signal: direct })
      return { frames, transport: InferTransport.DIRECT }
    } catch (err) {
      // the caller's own abort or deadline ends the open; anything else falls back to libp2p
      if (signal.aborted) {
        throw err
      }
    }
  }
  const stream = await connection.newStream(init.protocol ?? INFER_PROTOCOL, { signal })
  return { frames: new FrameStream(stream, { ...handlers, codec: inferFrameCodec, maxFrameBytes }), transport: InferTransport.LIBP2P }
}

function wrapAbort (err: unknown, init: StageClientInit, what: string): Error {
  if (err instanceof PipelineError) {
    return err
  }
  const e = err as Error
  if (init.signal?.aborted === true) {
    return new PipelineError(PipelineErrorCode.ABORTED, `${what}: aborted`, { stage: init.stage, cause: e })
  }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
    return new PipelineError(PipelineErrorCode.TIMEOUT, `${what}: no answer in time`, { stage: init.stage, cause: e })
  }
  return new PipelineError(PipelineErrorCode.STREAM_CLOSED, `${what}: ${e?.message ?? String(err)}`, { stage: init.stage, cause: e })
}
