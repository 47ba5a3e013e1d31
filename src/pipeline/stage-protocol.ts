/**
 * The stage server's side of /bly/infer/1.0.0 for each channel (libp2p
 * stream or direct channel), frames in and out: the first frame must be
 * OPEN within openTimeoutMs (admission decides: OPEN_OK, BUSY, or ERROR
 * and the stream closed); then FORWARD / TRUNCATE are queued for the
 * scheduler (at most maxQueuedSteps per session), CLOSE or the channel's
 * end releases the session, and a session with no frame for idleTimeoutMs
 * loses its cache (EXPIRED). A step is answered RESULT, or ERROR with its
 * seq; a failed TRUNCATE ends the session (client and stage disagree on the
 * cache). A frame that breaks the protocol gets ERROR and its stream is
 * aborted, nothing else; so does a frame that does not fit the partial-frame
 * bound (OVERLOADED). A session's room is always released before its last
 * frame goes out.
 */
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { InferErrorCode, f32Tensor } from '../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { SessionState, StageSession } from './stage-session.ts'
import type { InferChannel, InferChannelHandlers } from './infer-channel.ts'
import type { StageAdmission } from './stage-admission.ts'
import type { StageCompute } from './stage-compute.ts'
import type { StageJob } from './stage-session.ts'
import type { InferFrame, OpenFrame, ReceiptFrame } from '../protocols/infer.ts'
import type { BlyLogger } from '../protocols/logger.ts'

export interface StageProtocolInit {
  /** steps one session may have queued; more is a protocol violation */
  maxQueuedSteps: number
  /** a channel must send OPEN within this long */
  openTimeoutMs: number
  /** a session with no frame for this long loses its cache */
  idleTimeoutMs: number
}

export interface StageProtocolComponents {
  admission: Pick<StageAdmission, 'add' | 'admit' | 'release'>
  compute: Pick<StageCompute, 'forward' | 'truncate'>
  /** a step was queued: start it if nothing computes */
  schedule(): void
  /** a step arrival ticket, increasing over the whole server */
  nextTicket(): number
  /** the stage server's logger */
  log: BlyLogger
  /** a client's RECEIPT of an open session (protocols/ledger.md): check it, co-sign it, keep it; throws to refuse */
  receipt?(s: StageSession, frame: ReceiptFrame): Promise<void>
  /** the priority a client's session gets, given the one its OPEN asks for (docs/ledger.md: no balance = background); absent = as asked */
  priorityFor?(client: string, modelId: string, requested: number): number
}

/** Protocol counters (part of StageStats). */
export interface ProtocolCounters {
  /** sessions ended by CLOSE or by the client closing its stream */
  closed: number
  /** sessions dropped by the idle timeout */
  expired: number
  /** steps answered ERROR */
  errors: number
  /** streams aborted for a frame that did not decode or broke the protocol */
  malformed: number
  /** RECEIPTs co-signed, and those refused (they did not match the session, or no receipt handler) */
  receipts: number
  receiptsRefused: number
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export class StageProtocol {
  readonly counters: ProtocolCounters
  private readonly init: StageProtocolInit
  private readonly components: StageProtocolComponents

  constructor (components: StageProtocolComponents, init: StageProtocolInit) {
    this.components = components
    this.init = init
    this.counters = { closed: 0, expired: 0, errors: 0, malformed: 0, receipts: 0, receiptsRefused: 0 }
  }

  /**
   * The per-session code, whatever carries the frames: the handlers to give
   * the channel, and `bind` to call with the channel before it delivers any.
   */
  sessionFor (remotePeer: string): { handlers: InferChannelHandlers, bind(frames: InferChannel): void } {
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
          this.components.admission.release(ref.session)
        }
      }
    }
    const bind = (frames: InferChannel): void => {
      const s = new StageSession(frames, remotePeer)
      ref.session = s
      this.components.admission.add(s)
      s.arm(this.init.openTimeoutMs, () => {
        if (s.state === SessionState.AWAITING_OPEN) {
          this.counters.malformed++
          void this.fail(s, InferErrorCode.NOT_OPEN, 0, `no OPEN within ${this.init.openTimeoutMs} ms`, true)
        }
      })
    }
    return { handlers, bind }
  }

  /** Ends a session with an ERROR frame: aborts the stream when `abort`, else closes it after the frame went out. */
  async fail (s: StageSession, code: InferErrorCode, seq: number, message: string, abort: boolean): Promise<void> {
    this.components.admission.release(s)
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

  /** After a step of `s` ended: frees its cache when it was released meanwhile, else restarts its idle timer. */
  afterStep (s: StageSession): void {
    if (s.state === SessionState.CLOSED) {
      s.kv?.dispose()
      s.kv = null
    } else {
      this.armIdle(s)
    }
  }

  /** Computes one step of `s` and answers it: RESULT, or ERROR with the step's seq (a failed TRUNCATE ends the session). */
  async run (s: StageSession, job: StageJob): Promise<void> {
    try {
      if (job.type === 'truncate') {
        this.components.compute.truncate(s, job)
        return
      }
      const out = await this.components.compute.forward(s, job)
      if (out == null) {
        return
      }
      s.positions += job.tensor.rows
      if (s.state !== SessionState.OPEN) {
        return
      }
      s.frames.send({ type: 'result', sessionId: s.sessionId, seq: job.seq, startPos: job.startPos, kind: out.kind, tensor: f32Tensor(out.data, out.rows, out.cols) }).catch(() => {})
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
        this.components.log.error('session %d step %d failed - %e', s.sessionId, job.seq, err)
      }
      if (job.type === 'truncate') {
        // client and stage disagree on the cache: the session cannot go on
        void this.fail(s, code, job.seq, message, false)
        return
      }
      s.frames.send({ type: 'error', code, seq: job.seq, message }).catch(() => {})
    }
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
        s.jobs.push({ job: frame, ticket: this.components.nextTicket(), queuedAt: performance.now() })
        this.armIdle(s)
        this.components.schedule()
        return
      case 'close':
        this.counters.closed++
        this.components.admission.release(s)
        void s.frames.close()
        return
      case 'receipt':
        if (frame.sessionId !== s.sessionId) {
          this.counters.malformed++
          void this.fail(s, InferErrorCode.NOT_OPEN, 0, `session ${frame.sessionId} is not open on this stream`, true)
          return
        }
        this.receipt(s, frame)
        return
      default:
        this.counters.malformed++
        void this.fail(s, InferErrorCode.BAD_REQUEST, 0, `unexpected ${frame.type.toUpperCase()} frame from a client`, true)
    }
  }

  private open (s: StageSession, asked: OpenFrame): void {
    const priorityFor = this.components.priorityFor
    const frame = priorityFor != null ? { ...asked, priority: Math.min(asked.priority, priorityFor(s.remotePeer, asked.modelId, asked.priority)) } : asked
    const admitted = this.components.admission.admit(s, frame)
    switch (admitted.status) {
      case 'rejected':
        void this.fail(s, admitted.code, 0, admitted.message, false)
        return
      case 'busy':
        s.frames.send({ type: 'busy', sessionId: frame.sessionId, retryAfterMs: 0, message: admitted.message })
          .then(async () => s.frames.close())
          .catch(() => s.frames.abort(new PipelineError(PipelineErrorCode.BUSY, admitted.message)))
        return
      default:
        s.opened = { modelId: frame.modelId, start: frame.start, end: frame.end, ...(frame.weightsVersion != null ? { weightsVersion: frame.weightsVersion } : {}) }
        this.armIdle(s)
        s.frames.send({ type: 'open-ok', sessionId: frame.sessionId, maxLength: admitted.maxLength, hiddenSize: admitted.hiddenSize }).catch(() => {})
    }
  }

  /** A RECEIPT: handed to the receipt handler (no answer either way: the stage's payment is the stage's business). */
  private receipt (s: StageSession, frame: ReceiptFrame): void {
    const handler = this.components.receipt
    if (handler == null) {
      this.counters.receiptsRefused++
      return
    }
    handler(s, frame).then(() => { this.counters.receipts++ }, (err: unknown) => {
      this.counters.receiptsRefused++
      this.components.log('receipt of session %d refused - %s', s.sessionId, errorMessage(err))
    })
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
}
