/**
 * Length-prefixed frames of one protocol over one libp2p v3 stream, for
 * either end; the protocol is a parameter (its FrameCodec: encode, decode,
 * errors). Used for /bly/blocks/1.0.0 (net/sync-frames.ts) and
 * /bly/infer/1.0.0 (pipeline/infer-frames.ts).
 *
 * Reading: frames are decoded from `message` events by a FrameReader (a
 * malformed or oversize length prefix fails at once; partial frames may be
 * charged to a FrameBudget). The first frame that fails, or a listener that
 * throws, stops reading and goes to `onBadFrame` (the owner decides: the
 * stage answers ERROR and aborts); without `onBadFrame` the stream is
 * aborted with that error. A stream that fails, closes or is aborted drops
 * the frame it was receiving at once (its budget charge goes back).
 *
 * Writing: one frame at a time, in call order; a payload up to
 * COALESCE_BYTES is copied behind its head and sent as one message, a larger
 * one is sent on its own from the caller's memory (not copied); when the
 * muxer's buffer is full the next write waits for `drain`.
 *
 * With `isIdle`, the stream closes itself once idle after the remote ended
 * its writing, and (with `idleTimeoutMs`) when nothing was sent or received
 * for that long while idle. Exceptions thrown by listeners never escape into
 * the event loop.
 */
import { pEvent } from 'p-event'
import { FrameReader } from './frame-reader.ts'
import type { FrameBudget } from './frame-decoder.ts'
import type { ChannelErrors } from './frame-reader.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** Payloads up to this size are copied behind their head and sent as one message. */
export const COALESCE_BYTES = 64 * 1024

/** A frame ready to send: the length prefix and head, then the payload (kept as the caller's bytes). */
export interface FrameBytes {
  head: Uint8Array
  payload?: Uint8Array
  /** total bytes on the wire */
  byteLength: number
}

/** One protocol's frames: how they go on the wire and how failures are reported. */
export interface FrameCodec<F> {
  /** names the stream in messages ("infer" gives "infer stream is closed") */
  readonly name: string
  encode(frame: F): FrameBytes
  /** one frame body (without its length prefix); throws the protocol's error on anything malformed */
  decode(body: Uint8Array): F
  readonly errors: ChannelErrors
}

export interface FrameStreamInit<F> {
  codec: FrameCodec<F>
  /** largest frame accepted (bytes, without the length prefix) */
  maxFrameBytes: number
  /** what partially received frames may hold, shared with the owner's other streams (none = maxFrameBytes alone) */
  frameBudget?: FrameBudget
  /** called for every decoded frame; may start async work but must not block */
  onFrame(frame: F): void
  /** a frame that failed (reading has stopped; the stream stays open: the owner decides); none = abort the stream */
  onBadFrame?(err: Error): void
  /** called once when the stream ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
  /** true when no work is outstanding: given, the stream closes itself when idle after the remote ended its writing */
  isIdle?(): boolean
  /** with isIdle: close the stream when nothing was sent or received for this long and isIdle() holds */
  idleTimeoutMs?: number
}

export class FrameStream<F> {
  readonly stream: Stream
  private readonly init: FrameStreamInit<F>
  private readonly codec: FrameCodec<F>
  private readonly reader: FrameReader<F>
  private writeChain: Promise<void>
  private idleTimer?: ReturnType<typeof setTimeout>
  private closed: boolean
  bytesIn: number
  bytesOut: number

  constructor (stream: Stream, init: FrameStreamInit<F>) {
    this.stream = stream
    this.init = init
    this.codec = init.codec
    this.closed = false
    this.bytesIn = 0
    this.bytesOut = 0
    this.writeChain = Promise.resolve()
    this.reader = new FrameReader({
      name: `${init.codec.name} stream`,
      maxFrameBytes: init.maxFrameBytes,
      frameBudget: init.frameBudget,
      decode: init.codec.decode,
      errors: init.codec.errors,
      onFrame: init.onFrame,
      onError: (err) => { this.onReadError(err) }
    })
    // a paused or slow reader may hold up to two frames
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, init.maxFrameBytes * 2 + 16)
    this.onMessage = this.onMessage.bind(this)
    this.onStreamClose = this.onStreamClose.bind(this)
    this.onRemoteCloseWrite = this.onRemoteCloseWrite.bind(this)
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onStreamClose)
    if (init.isIdle != null) {
      stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    }
    this.touch()
  }

  get isOpen (): boolean {
    return !this.closed && this.stream.status === 'open' && this.stream.writeStatus === 'writable'
  }

  /** Write one frame; resolves once it is handed to the muxer (after waiting for drain when its buffer is full). */
  async send (frame: F): Promise<void> {
    const { head, payload, byteLength } = this.codec.encode(frame)
    const write = async (): Promise<void> => {
      if (!this.isOpen) {
        throw this.codec.errors.closed(`${this.codec.name} stream is closed`)
      }
      this.touch()
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
    this.clearIdle()
    this.stopReading()
    await this.writeChain
    await this.stream.close().catch((err: Error) => {
      this.stream.abort(err)
    })
  }

  abort (err: Error): void {
    this.clearIdle()
    this.stopReading()
    this.stream.abort(err)
  }

  /** No more frames: drop the one being received (and its budget charge); writing goes on. */
  stopReading (): void {
    this.reader.stop()
  }

  /** Re-arm the idle timer (done on every message in and frame out); nothing without idleTimeoutMs. */
  touch (): void {
    if (this.closed || this.init.idleTimeoutMs == null) {
      return
    }
    this.clearIdle()
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      if (this.init.isIdle?.() === true) {
        void this.close()
      } else {
        this.touch()
      }
    }, this.init.idleTimeoutMs)
    this.idleTimer.unref?.()
  }

  private onMessage (evt: StreamMessageEvent): void {
    if (this.reader.stopped) {
      return
    }
    this.touch()
    this.bytesIn += evt.data.byteLength
    // chunks are not reused by the muxer: frames inside one are handed out as views
    if (evt.data instanceof Uint8Array) {
      this.reader.push(evt.data)
      return
    }
    for (const chunk of evt.data) {
      this.reader.push(chunk)
      if (this.reader.stopped) {
        return
      }
    }
  }

  /** A frame failed or a listener threw (reading has stopped): the owner decides, else the stream is aborted. */
  private onReadError (err: Error): void {
    if (this.init.onBadFrame == null) {
      this.abort(err)
      return
    }
    try {
      this.init.onBadFrame(err)
    } catch {
      this.abort(err)
    }
  }

  private onRemoteCloseWrite (): void {
    // the remote sends nothing more: once our side has nothing left to do, close
    if (this.init.isIdle?.() === true) {
      void this.close()
    }
  }

  private onStreamClose (evt: StreamCloseEvent): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.clearIdle()
    this.stopReading()
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onStreamClose)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    try {
      this.init.onClose(evt.error)
    } catch (err) {
      this.stream.log.error('onClose listener threw - %e', err)
    }
  }

  private clearIdle (): void {
    if (this.idleTimer != null) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
  }
}
