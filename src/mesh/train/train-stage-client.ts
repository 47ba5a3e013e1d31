/**
 * The driver's end of one /bly/train/1.0.0 stream (one job on one stage).
 * Requests may be pipelined: the stage answers them one at a time in the
 * order sent, so answers are matched to requests first in, first out. An
 * ERROR answer rejects its request with TrainProtocolError REMOTE
 * (`remoteCode` the wire code); an answer of the wrong type, job, step or
 * micro-batch rejects it BAD_REPLY and ends the stream (the order is lost);
 * no answer within `timeoutMs` rejects it TIMEOUT and ends the stream; the
 * stream's end rejects every request still waiting STREAM_CLOSED. Every
 * request's promise has a handler attached, so a rejection nobody awaits
 * yet is never unhandled.
 */
import { FrameStream } from '../../net/frame-stream.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { TrainFrameType } from '../../protocols/train.ts'
import { trainFrameCodec } from './train-frames.ts'
import type { TrainProtocolErrorCodeValue } from '../../protocols/train-errors.ts'
import type { TrainFrame } from '../../protocols/train.ts'
import type { Stream } from '@libp2p/interface'

interface Pending {
  expect: number
  step?: number
  micro?: number
  resolve(frame: TrainFrame): void
  reject(err: Error): void
  timer: ReturnType<typeof setTimeout>
}

export interface TrainStageClientInit {
  /** the route hop this stream serves (named in errors) */
  stage: number
  timeoutMs: number
  maxFrameBytes: number
}

export class TrainStageClient {
  readonly stage: number
  private readonly fs: FrameStream<TrainFrame>
  private readonly pending: Pending[]
  private readonly timeoutMs: number
  private closedError: Error | null

  constructor (stream: Stream, init: TrainStageClientInit) {
    this.stage = init.stage
    this.timeoutMs = init.timeoutMs
    this.pending = []
    this.closedError = null
    this.fs = new FrameStream<TrainFrame>(stream, {
      codec: trainFrameCodec,
      maxFrameBytes: init.maxFrameBytes,
      onFrame: (frame) => { this.onFrame(frame) },
      onBadFrame: (err) => { this.fail(err) },
      onClose: (err) => {
        this.fail(new TrainProtocolError(TrainProtocolErrorCode.STREAM_CLOSED, `stage ${this.stage}: the train stream closed${err != null ? ` - ${err.message}` : ''}`, { stage: this.stage, cause: err }))
      }
    })
  }

  /** Sends `frame`; resolves with the answer of type `expect` (matching `step` / `micro` when given). */
  async request<T extends TrainFrame> (frame: TrainFrame, expect: number, step?: number, micro?: number): Promise<T> {
    const p = new Promise<T>((resolve, reject) => {
      if (this.closedError != null) {
        reject(this.closedError)
        return
      }
      const entry: Pending = {
        expect,
        step,
        micro,
        resolve: resolve as (f: TrainFrame) => void,
        reject,
        timer: setTimeout(() => {
          this.fail(new TrainProtocolError(TrainProtocolErrorCode.TIMEOUT, `stage ${this.stage}: no answer within ${this.timeoutMs} ms`, { stage: this.stage }))
        }, this.timeoutMs)
      }
      this.pending.push(entry)
      this.fs.send(frame).catch((err: Error) => { this.fail(err) })
    })
    p.catch(() => {})
    return p
  }

  private onFrame (frame: TrainFrame): void {
    const head = this.pending.shift()
    if (head == null) {
      this.fail(new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${this.stage}: an answer (type ${frame.type}) nobody asked for`, { stage: this.stage }))
      return
    }
    clearTimeout(head.timer)
    if (frame.type === TrainFrameType.ERROR) {
      head.reject(new TrainProtocolError(TrainProtocolErrorCode.REMOTE, `stage ${this.stage} refused: ${frame.message}`, { stage: this.stage, remoteCode: frame.code }))
      return
    }
    const f = frame as { type: number, step?: number, micro?: number }
    if (f.type !== head.expect || (head.step != null && f.step !== head.step) || (head.micro != null && f.micro !== head.micro)) {
      const err = new TrainProtocolError(TrainProtocolErrorCode.BAD_REPLY, `stage ${this.stage}: answer type ${f.type} (step ${f.step}, micro ${f.micro}) to a request expecting type ${head.expect} (step ${head.step}, micro ${head.micro})`, { stage: this.stage })
      head.reject(err)
      this.fail(err)
      return
    }
    head.resolve(frame)
  }

  /** True once the stream failed or was closed: no request gets an answer any more. */
  get broken (): boolean {
    return this.closedError != null
  }

  /** Rejects every waiting request with `err` (a TrainProtocolError naming this stage) and ends the stream. */
  private fail (cause: Error): void {
    const err = cause instanceof TrainProtocolError && cause.stage == null
      ? new TrainProtocolError(cause.code as TrainProtocolErrorCodeValue, `stage ${this.stage}: ${cause.message}`, { stage: this.stage, cause, ...(cause.remoteCode != null ? { remoteCode: cause.remoteCode } : {}) })
      : cause
    if (this.closedError == null) {
      this.closedError = err
    }
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    if (this.fs.isOpen) {
      this.fs.abort(err)
    }
  }

  async close (): Promise<void> {
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer)
      p.reject(new TrainProtocolError(TrainProtocolErrorCode.STREAM_CLOSED, `stage ${this.stage}: closed by the driver`, { stage: this.stage }))
    }
    this.closedError ??= new TrainProtocolError(TrainProtocolErrorCode.STREAM_CLOSED, `stage ${this.stage}: closed by the driver`, { stage: this.stage })
    await this.fs.close().catch(() => {})
  }
}
