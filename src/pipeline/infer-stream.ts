/**
 * /bly/infer/1.0.0 frames over one libp2p v3 stream, for both ends: decodes
 * incoming frames from `message` events with the direct channel's
 * FrameDecoder (one set of framing rules for both transports: a malformed or
 * oversize length prefix fails at once), writes header and payload as two
 * sends (the tensor bytes are not copied), serialises writes and waits for
 * `drain` when the muxer's buffer is full. A frame that fails to decode, or
 * that the PartialFrameBudget refuses, is reported to `onBadFrame` (the
 * owner answers ERROR and aborts) and reading stops; a stream that fails,
 * closes or is aborted drops the frame it was receiving at once (its budget
 * charge goes back). Exceptions thrown by listeners never escape into the
 * event loop.
 */
import { pEvent } from 'p-event'
import { decodeInferFrame, encodeInferFrame } from '../protocols/infer.ts'
import { FrameDecoder } from './direct-channel/frame-decoder.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import type { PartialFrameBudget } from './frame-budget.ts'
import type { InferFrame } from '../protocols/infer.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** Payloads up to this size are copied behind their header and sent as one message. */
export const COALESCE_BYTES = 64 * 1024

export interface InferStreamInit {
  /** largest frame accepted (bytes, without the length prefix) */
  maxFrameBytes: number
  /** what partially received frames may hold, shared with the owner's other streams (none = maxFrameBytes alone) */
  frameBudget?: PartialFrameBudget
  onFrame(frame: InferFrame): void
  /** a frame that did not decode or did not fit the budget (reading has stopped; the stream stays open: the owner decides) */
  onBadFrame(err: Error): void
  /** called once when the stream ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
}

export class InferStream {
  readonly stream: Stream
  private readonly init: InferStreamInit
  private readonly decoder: FrameDecoder
  private writeChain: Promise<void>
  private closed: boolean
  private broken: boolean
  bytesIn: number
  bytesOut: number

  constructor (stream: Stream, init: InferStreamInit) {
    this.stream = stream
    this.init = init
    this.closed = false
    this.broken = false
    this.bytesIn = 0
    this.bytesOut = 0
    this.writeChain = Promise.resolve()
    this.emitFrame = this.emitFrame.bind(this)
    this.decoder = new FrameDecoder(init.maxFrameBytes, init.frameBudget)
    // a paused or slow reader may hold up to two frames
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, init.maxFrameBytes * 2 + 16)
    this.onMessage = this.onMessage.bind(this)
    this.onStreamClose = this.onStreamClose.bind(this)
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onStreamClose)
  }

  get isOpen (): boolean {
    return !this.closed && this.stream.status === 'open' && this.stream.writeStatus === 'writable'
  }

  /** Write one frame; resolves once it is handed to the muxer (after waiting for drain when its buffer is full). */
  async send (frame: InferFrame): Promise<void> {
    const { head, payload, byteLength } = encodeInferFrame(frame)
    const write = async (): Promise<void> => {
      if (!this.isOpen) {
        throw new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'infer stream is closed')
      }
      this.bytesOut += byteLength
      let ok: boolean
      if (payload == null) {
        ok = this.stream.send(head)
      } else if (payload.byteLength <= COALESCE_BYTES) {
        // one muxer frame and one encrypted message instead of two: a copy this small costs less
        const one = new Uint8Array(byteLength)
        one.set(head, 0)
        one.set(payload, head.length)
        ok = this.stream.send(one)
      } else {
        this.stream.send(head)
        ok = this.stream.send(payload)
      }
      if (!ok) {
        await pEvent(this.stream, 'drain', { rejectionEvents: ['close'] })
      }
    }
    const next = this.writeChain.then(write, write)
    this.writeChain = next.catch(() => {})
    return next
  }

  /** Close gracefully once queued writes went out; nothing more is read (a frame being received is dropped now). */
  async close (): Promise<void> {
    this.stopReading()
    await this.writeChain
    await this.stream.close().catch((err: Error) => {
      this.stream.abort(err)
    })
  }

  abort (err: Error): void {
    this.stopReading()
    this.stream.abort(err)
  }

  /** No more frames: drop the one being received (and its budget charge); writing goes on. */
  stopReading (): void {
    this.broken = true
    this.decoder.reset()
  }

  private onMessage (evt: StreamMessageEvent): void {
    if (this.broken) {
      return
    }
    try {
      this.bytesIn += evt.data.byteLength
      // chunks are not reused by the muxer: frames inside one are handed out as views
      if (evt.data instanceof Uint8Array) {
        this.decoder.push(evt.data, this.emitFrame)
      } else {
        for (const chunk of evt.data) {
          this.decoder.push(chunk, this.emitFrame)
          if (this.broken) {
            return
          }
        }
      }
    } catch (err) {
      // a bad or oversize length prefix, a frame that did not decode or did not fit the budget, or a listener that threw
      this.stopReading()
      const e = err instanceof PipelineError ? err : new PipelineError(PipelineErrorCode.BAD_FRAME, `infer stream failed: ${(err as Error).message}`, { cause: err })
      try {
        this.init.onBadFrame(e)
      } catch {
        this.stream.abort(e)
      }
    }
  }

  /** A whole frame body from the decoder; one that does not decode throws (onMessage reports it). */
  private emitFrame (body: Uint8Array): void {
    if (this.broken) {
      return
    }
    this.init.onFrame(decodeInferFrame(body))
  }

  private onStreamClose (evt: StreamCloseEvent): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.stopReading()
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onStreamClose)
    try {
      this.init.onClose(evt.error)
    } catch (err) {
      this.stream.log.error('onClose listener threw - %e', err)
    }
  }
}
