/**
 * /bly/infer/1.0.0 frames over one authenticated TLS socket (a direct
 * channel), with the same surface as InferStream (send / close / abort /
 * isOpen, onFrame / onBadFrame / onClose) so the stage server and client can
 * drive either. Writes of one tick are corked into one writev (one TLS
 * record run, one syscall); the socket has TCP_NODELAY. Reads go through
 * FrameDecoder (views of the socket's chunks, one copy for frames that span
 * chunks). Listener exceptions never escape into the event loop.
 */
import { decodeInferFrame, encodeInferFrame } from '../../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from '../errors.ts'
import { FrameDecoder } from './frame-decoder.ts'
import type { InferFrame } from '../../protocols/infer.ts'
import type { TLSSocket } from 'node:tls'

/** What the owner of a channel listens with (the InferStreamInit callbacks). */
export interface DirectChannelHandlers {
  onFrame(frame: InferFrame): void
  /** a frame that did not decode; the channel stops reading (the owner answers ERROR and aborts) */
  onBadFrame(err: Error): void
  /** called once when the channel ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
}

export class DirectChannel {
  readonly socket: TLSSocket
  private init?: DirectChannelHandlers
  private leftover?: Uint8Array
  private readonly decoder: FrameDecoder
  private corked: boolean
  private flushWaiters: Array<() => void>
  private closed: boolean
  private broken: boolean
  private closeError?: Error
  private drain?: Promise<void>
  bytesIn: number
  bytesOut: number

  /**
   * `socket` has finished its TLS handshake and hello; `leftover` are bytes
   * read past the hello. Nothing is read until `attach()`.
   */
  constructor (socket: TLSSocket, maxFrameBytes: number, leftover?: Uint8Array) {
    this.socket = socket
    this.leftover = leftover
    this.decoder = new FrameDecoder(maxFrameBytes)
    this.corked = false
    this.flushWaiters = []
    this.closed = false
    this.broken = false
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
    const leftover = this.leftover
    this.leftover = undefined
    if (leftover != null && leftover.length > 0) {
      this.onData(leftover)
    }
    if (this.closed) {
      this.closed = false
      this.onSocketClose()
      return
    }
    this.socket.on('data', this.onData)
    if (!this.broken) {
      this.socket.resume()
    }
  }

  get isOpen (): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable
  }

  /**
   * Write one frame. Resolves once the tick's writes were handed to TLS (the
   * payload is encrypted then and may be reused), after waiting for `drain`
   * when the socket's buffer is full.
   */
  async send (frame: InferFrame): Promise<void> {
    if (!this.isOpen) {
      throw new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel is closed')
    }
    const { head, payload, byteLength } = encodeInferFrame(frame)
    this.bytesOut += byteLength
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(this.flush)
    }
    this.socket.write(head)
    if (payload != null) {
      this.socket.write(payload)
    }
    await new Promise<void>(resolve => { this.flushWaiters.push(resolve) })
    if (this.socket.writableNeedDrain && !this.socket.destroyed) {
      await this.drained()
    }
  }

  /** One shared wait for `drain` (or close) however many senders wait. */
  private drained (): Promise<void> {
    if (this.drain == null) {
      this.drain = new Promise<void>((resolve, reject) => {
        const done = (): void => {
          this.socket.off('drain', done)
          this.socket.off('close', done)
          this.drain = undefined
          if (this.socket.destroyed) {
            reject(new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed while writing'))
          } else {
            resolve()
          }
        }
        this.socket.on('drain', done)
        this.socket.on('close', done)
      })
      // a sender that stops waiting must not leave an unhandled rejection
      this.drain.catch(() => {})
    }
    return this.drain
  }

  /** Close gracefully: queued writes go out, then the TLS session ends. Resolves when the socket closed. */
  async close (): Promise<void> {
    if (this.socket.destroyed) {
      return
    }
    const closed = new Promise<void>(resolve => this.socket.once('close', () => { resolve() }))
    this.flush()
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
    this.socket.destroy()
  }

  private flush (): void {
    if (this.corked) {
      this.corked = false
      this.socket.uncork()
    }
    const waiters = this.flushWaiters
    this.flushWaiters = []
    for (const w of waiters) {
      w()
    }
  }

  private onData (chunk: Uint8Array): void {
    const init = this.init
    if (this.broken || init == null) {
      return
    }
    this.bytesIn += chunk.length
    try {
      this.decoder.push(chunk, (body) => {
        let frame: InferFrame
        try {
          frame = decodeInferFrame(body)
        } catch (err) {
          this.broken = true
          throw err
        }
        init.onFrame(frame)
      })
    } catch (err) {
      this.broken = true
      this.socket.pause()
      const e = err instanceof PipelineError ? err : new PipelineError(PipelineErrorCode.BAD_FRAME, `direct channel failed: ${(err as Error).message}`, { cause: err })
      try {
        init.onBadFrame(e)
      } catch {
        this.abort(e)
      }
    }
  }

  private onSocketClose (): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.flush()
    if (this.init == null) {
      // attach() reports it
      return
    }
    let err = this.closeError
    if (err == null && !this.decoder.idle) {
      err = new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed inside a frame')
    }
    try {
      this.init.onClose(err)
    } catch {
      // the owner's listener failed: nothing left to tear down
    }
  }
}
