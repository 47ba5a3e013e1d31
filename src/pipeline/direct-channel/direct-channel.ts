/**
 * /bly/infer/1.0.0 frames over one authenticated TLS socket (a direct
 * channel), with the same surface as FrameStream (send / close / abort /
 * isOpen, onFrame / onBadFrame / onClose) so the stage server and client can
 * drive either. One write to TLS at a time: small buffers queued meanwhile
 * are joined into one write (one TLS record run, one syscall), a large
 * payload is written alone, straight from the caller's memory; the socket
 * has TCP_NODELAY. Reads go through the FrameReader that libp2p streams use
 * too (net/frame-reader.ts, the same framing rules and codec): from `data`
 * events (views of the socket's chunks, one copy for frames that span
 * chunks), or, on a socket created with `onread` (the client's), straight
 * into the frame being assembled. Listener exceptions never escape into the
 * event loop. A channel that fails (bad frame), is closed or is aborted stops
 * reading and drops the frame it was receiving at once, giving its bytes back
 * to the PartialFrameBudget it was built with (the stage's).
 */
import { FrameReader } from '../../net/frame-reader.ts'
import { encodeInferFrame } from '../../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from '../errors.ts'
import { inferFrameCodec } from '../infer-frames.ts'
import { readInPlace } from './read-in-place.ts'
import type { FrameBudget } from '../../net/frame-decoder.ts'
import type { InferFrame } from '../../protocols/infer.ts'
import type { TLSSocket } from 'node:tls'

/** What the owner of a channel listens with (the FrameStreamInit callbacks). */
export interface DirectChannelHandlers {
  onFrame(frame: InferFrame): void
  /** a frame that did not decode; the channel stops reading (the owner answers ERROR and aborts) */
  onBadFrame(err: Error): void
  /** called once when the channel ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
}

/**
 * Buffers of at least this many bytes are written on their own (no copy into
 * a joined buffer); smaller ones queued together are joined, up to
 * JOINED_WRITE_BYTES per write.
 */
const SEPARATE_WRITE_BYTES = 64 * 1024
const JOINED_WRITE_BYTES = 256 * 1024

interface QueuedWrite {
  buf: Uint8Array
  resolve?(): void
  reject?(err: Error): void
}

export class DirectChannel {
  readonly socket: TLSSocket
  private init?: DirectChannelHandlers
  /** bytes read before attach(): past the hello, or (reading in place) read by the socket meanwhile */
  private early: Uint8Array[]
  private readonly reader: FrameReader<InferFrame>
  /** buffers not yet handed to the socket; `resolve`/`reject` on the last buffer of a frame */
  private queue: QueuedWrite[]
  /** the write the socket has not completed yet */
  private inFlight?: QueuedWrite[]
  private writing: boolean
  private flushScheduled: boolean
  private closed: boolean
  private inPlace: boolean
  private closeError?: Error
  bytesIn: number
  bytesOut: number

  /**
   * `socket` has finished its TLS handshake and hello; `leftover` are bytes
   * read past the hello. Nothing is read until `attach()`. `readsInPlace`:
   * the socket was created with `onread` feeding readBuffer()/onRead().
   * `frameBudget`: what partially received frames may hold, shared with the
   * owner's other channels (none = bounded by maxFrameBytes alone).
   */
  constructor (socket: TLSSocket, maxFrameBytes: number, leftover?: Uint8Array, readsInPlace = false, frameBudget?: FrameBudget) {
    this.socket = socket
    this.early = leftover != null && leftover.length > 0 ? [leftover] : []
    this.reader = new FrameReader({
      name: 'direct channel',
      maxFrameBytes,
      frameBudget,
      decode: inferFrameCodec.decode,
      errors: inferFrameCodec.errors,
      onFrame: (frame) => { this.init?.onFrame(frame) },
      onError: (err) => { this.readFailed(err) }
    })
    this.queue = []
    this.writing = false
    this.flushScheduled = false
    this.closed = false
    this.inPlace = readsInPlace
    this.bytesIn = 0
    this.bytesOut = 0
    this.onData = this.onData.bind(this)
    this.flush = this.flush.bind(this)
    socket.setNoDelay(true)
    socket.pause()
    socket.on('error', (err: Error) => { this.closeError ??= err })
    socket.once('close', () => { this.onSocketClose() })
  }

  /** Start delivering frames (and the close) to `handlers`; once only. */
  attach (handlers: DirectChannelHandlers): void {
    if (this.init != null) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'direct channel already has handlers')
    }
    this.init = handlers
    const early = this.early
    this.early = []
    for (const bytes of early) {
      this.onData(bytes)
    }
    if (this.closed) {
      this.closed = false
      this.onSocketClose()
      return
    }
    this.socket.on('data', this.onData)
    if (!this.reader.stopped) {
      this.socket.resume()
    }
  }

  get isOpen (): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable
  }

  /**
   * Write one frame. Resolves once it was written to the socket; rejects
   * with STREAM_CLOSED when the channel closed first. Writes go out one at a
   * time (the next when the previous completed, which is the backpressure):
   * the small buffers queued meanwhile are joined into one write (one TLS
   * record run, one syscall), a large payload is written alone, so TLS
   * encrypts it from the caller's memory without first copying it together
   * with its header (what a writev of several buffers does).
   */
  async send (frame: InferFrame): Promise<void> {
    if (!this.isOpen) {
      throw new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel is closed')
    }
    const { head, payload, byteLength } = encodeInferFrame(frame)
    this.bytesOut += byteLength
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    if (payload == null) {
      this.queue.push({ buf: head, resolve, reject })
    } else {
      this.queue.push({ buf: head })
      this.queue.push({ buf: payload, resolve, reject })
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(this.flush)
    }
    return promise
  }

  /**
   * Close gracefully: queued writes go out, then the TLS session ends.
   * Nothing more is read (a frame being received is dropped now). Resolves
   * when the socket closed.
   */
  async close (): Promise<void> {
    this.stopReading()
    if (this.socket.destroyed) {
      return
    }
    const closed = new Promise<void>(resolve => this.socket.once('close', () => { resolve() }))
    // what is queued goes out before the TLS close_notify
    while (this.queue.length > 0 && !this.socket.destroyed) {
      this.writeNext()
    }
    this.socket.end()
    // the peer may never answer our close_notify: do not wait for it forever
    const timer = setTimeout(() => { this.socket.destroy() }, 5_000)
    timer.unref()
    await closed
    clearTimeout(timer)
  }

  /** Tear the channel down now; onClose gets `err`. */
  abort (err: Error): void {
    this.closeError ??= err
    this.stopReading()
    this.socket.destroy()
  }

  /** No more frames: drop the one being received (and its budget charge); writing goes on. */
  stopReading (): void {
    this.reader.stop()
  }

  private flush (): void {
    this.flushScheduled = false
    if (!this.writing) {
      this.writeNext()
    }
  }

  /** Write the next large buffer alone, or the next run of small ones joined. */
  private writeNext (): void {
    const q = this.queue
    if (q.length === 0 || this.socket.destroyed) {
      return
    }
    let n = 1
    if (q[0].buf.byteLength < SEPARATE_WRITE_BYTES) {
      let bytes = q[0].buf.byteLength
      while (n < q.length && q[n].buf.byteLength < SEPARATE_WRITE_BYTES && bytes + q[n].buf.byteLength <= JOINED_WRITE_BYTES) {
        bytes += q[n].buf.byteLength
        n++
      }
    }
    const batch = q.splice(0, n)
    const buf = n === 1 ? batch[0].buf : Buffer.concat(batch.map(w => w.buf))
    this.writing = true
    this.inFlight = batch
    this.socket.write(buf, (err) => {
      this.writing = false
      this.inFlight = undefined
      if (err != null) {
        const e = new PipelineError(PipelineErrorCode.STREAM_CLOSED, `direct channel write failed: ${err.message}`, { cause: err })
        for (const w of batch) {
          w.reject?.(e)
        }
        return
      }
      for (const w of batch) {
        w.resolve?.()
      }
      this.writeNext()
    })
  }

  /** The channel closed: every frame not yet written fails. */
  private failWrites (): void {
    const e = new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed while writing')
    for (const w of [...(this.inFlight ?? []), ...this.queue]) {
      w.reject?.(e)
    }
    this.inFlight = undefined
    this.queue = []
  }

  /**
   * Read frames in place on a socket a server accepted (see read-in-place.ts:
   * what `onread` does, through node internals); call before `attach()`.
   * False where this node does not allow it: `data` events are read then.
   */
  readInPlace (): boolean {
    if (this.init != null || this.inPlace) {
      return this.inPlace
    }
    this.inPlace = readInPlace(this.socket, {
      buffer: () => this.readBuffer(),
      callback: (n, buf) => this.onRead(n, buf)
    })
    return this.inPlace
  }

  /** Whether frames are read straight into their buffers (else from `data` events). */
  get readsInPlace (): boolean {
    return this.inPlace
  }

  /**
   * For a socket created with node's `onread` (the client's end): the
   * memory the next read lands in — the rest of the frame being assembled,
   * so a large frame is read in place with no chunk allocated or copied.
   */
  readBuffer (): Uint8Array {
    return this.reader.readBuffer()
  }

  /** `onread` callback: `n` bytes landed in `buf` (the last readBuffer()). False stops reading. */
  onRead (n: number, buf: Uint8Array): boolean {
    if (this.init == null) {
      // not attached yet: keep a copy (the buffer is read into again)
      this.early.push(buf.slice(0, n))
      return true
    }
    if (this.reader.stopped) {
      return false
    }
    this.bytesIn += n
    this.reader.read(buf, n)
    return !this.reader.stopped
  }

  private onData (chunk: Uint8Array): void {
    if (this.reader.stopped || this.init == null) {
      return
    }
    this.bytesIn += chunk.length
    this.reader.push(chunk)
  }

  /** A bad frame, or the owner's onFrame threw (the reader has stopped): tell the owner. */
  private readFailed (err: Error): void {
    this.socket.pause()
    try {
      this.init?.onBadFrame(err)
    } catch {
      this.abort(err)
    }
  }

  private onSocketClose (): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.failWrites()
    if (this.init == null) {
      // attach() reports it
      return
    }
    let err = this.closeError
    if (err == null && !this.reader.idle) {
      err = new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed inside a frame')
    }
    this.reader.stop()
    try {
      this.init.onClose(err)
    } catch {
      // the owner's listener failed: nothing left to tear down
    }
  }
}
