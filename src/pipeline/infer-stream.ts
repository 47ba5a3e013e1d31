/**
 * /bly/infer/1.0.0 frames over one libp2p v3 stream, for both ends: decodes
 * incoming frames from `message` events, writes header and payload as two
 * sends (the tensor bytes are not copied), serialises writes and waits for
 * `drain` when the muxer's buffer is full. A frame that fails to decode is
 * reported to `onBadFrame` (the owner answers ERROR and aborts); exceptions
 * thrown by listeners never escape into the event loop.
 */
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { pEvent } from 'p-event'
import { decodeInferFrame, encodeInferFrame } from '../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import type { InferFrame } from '../protocols/infer.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** Payloads up to this size are copied behind their header and sent as one message. */
export const COALESCE_BYTES = 64 * 1024

export interface InferStreamInit {
  /** largest frame accepted (bytes, without the length prefix) */
  maxFrameBytes: number
  onFrame(frame: InferFrame): void
  /** a frame that did not decode (the stream stays open: the owner decides) */
  onBadFrame(err: Error): void
  /** called once when the stream ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
}

export class InferStream {
  readonly stream: Stream
  private readonly init: InferStreamInit
  private readonly decoder: LengthPrefixedDecoder
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
    this.decoder = new LengthPrefixedDecoder({
      maxDataLength: init.maxFrameBytes,
      // one whole frame plus the start of the next can arrive in one message event
      maxBufferSize: init.maxFrameBytes * 2 + 16
    })
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

  /** Close gracefully once queued writes went out. */
  async close (): Promise<void> {
    await this.writeChain
    await this.stream.close().catch((err: Error) => {
      this.stream.abort(err)
    })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  private onMessage (evt: StreamMessageEvent): void {
    if (this.broken) {
      return
    }
    try {
      this.bytesIn += evt.data.byteLength
      for (const buf of this.decoder.decode(evt.data)) {
        let frame: InferFrame
        try {
          frame = decodeInferFrame(buf.subarray())
        } catch (err) {
          this.broken = true
          this.init.onBadFrame(err as Error)
          return
        }
        this.init.onFrame(frame)
      }
    } catch (err) {
      // a length prefix past maxFrameBytes, or a listener that threw
      this.broken = true
      const e = err instanceof PipelineError ? err : new PipelineError(PipelineErrorCode.BAD_FRAME, `infer stream failed: ${(err as Error).message}`, { cause: err })
      try {
        this.init.onBadFrame(e)
      } catch {
        this.stream.abort(e)
      }
    }
  }

  private onStreamClose (evt: StreamCloseEvent): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onStreamClose)
    try {
      this.init.onClose(evt.error)
    } catch (err) {
      this.stream.log.error('onClose listener threw - %e', err)
    }
  }
}
