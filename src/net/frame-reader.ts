/**
 * The reading half of a framed channel, whatever carries the bytes (a libp2p
 * stream's `message` events, a socket's `data` events, or a socket reading in
 * place): a FrameDecoder splits the bytes into frames, the protocol's
 * `decode` turns each into a frame for `onFrame`, in order. The first failure
 * (a bad or oversize length prefix, a body that does not decode, a charge the
 * FrameBudget refuses, or `onFrame` throwing) stops reading for good and is
 * reported once to `onError`, as the protocol's own error. `stop()` drops the
 * frame being received at once and gives its budget charge back; nothing is
 * delivered after it. Nothing here throws into the caller's event loop.
 */
import { FrameDecoder } from './frame-decoder.ts'
import type { FrameBudget, FrameErrors } from './frame-decoder.ts'

/** How a protocol reports failures on a framed channel. */
export interface ChannelErrors extends FrameErrors {
  /** a write on a channel that is closed */
  closed(message: string): Error
  /** true for the protocol's own errors: they are reported as they are, anything else becomes `badFrame` */
  owns(err: unknown): boolean
}

export interface FrameReaderInit<F> {
  /** names the channel in error messages ("infer stream", "direct channel") */
  name: string
  /** largest frame accepted (bytes, without the length prefix) */
  maxFrameBytes: number
  /** what partially received frames may hold, shared with the owner's other channels (none = maxFrameBytes alone) */
  frameBudget?: FrameBudget
  /** one frame body (without its length prefix) to a frame; throws the protocol's error on anything malformed */
  decode(body: Uint8Array): F
  errors: ChannelErrors
  onFrame(frame: F): void
  /** the first failure; reading has stopped */
  onError(err: Error): void
}

export class FrameReader<F> {
  private readonly init: FrameReaderInit<F>
  private readonly decoder: FrameDecoder
  private done: boolean

  constructor (init: FrameReaderInit<F>) {
    this.init = init
    this.decoder = new FrameDecoder(init.maxFrameBytes, init.errors, init.frameBudget)
    this.done = false
    this.emit = this.emit.bind(this)
  }

  /** True once reading stopped (stop() or a failure). */
  get stopped (): boolean {
    return this.done
  }

  /** True when no partial frame or length prefix is pending. */
  get idle (): boolean {
    return this.decoder.idle
  }

  /** No more frames: drop the one being received (and its budget charge). Idempotent. */
  stop (): void {
    this.done = true
    this.decoder.reset()
  }

  /** Feed one chunk the reader owns and never reuses (frames inside it are handed out as views). */
  push (chunk: Uint8Array): void {
    if (this.done) {
      return
    }
    try {
      this.decoder.push(chunk, this.emit)
    } catch (err) {
      this.fail(err)
    }
  }

  /** Where a socket reading in place should put its next read (see FrameDecoder.readBuffer). */
  readBuffer (): Uint8Array {
    return this.decoder.readBuffer()
  }

  /** `n` bytes were read into `buf`, the last readBuffer(). */
  read (buf: Uint8Array, n: number): void {
    if (this.done) {
      return
    }
    try {
      this.decoder.read(buf, n, this.emit)
    } catch (err) {
      this.fail(err)
    }
  }

  /** A whole frame body from the decoder (bound once: no closure per read); what throws here ends in fail(). */
  private emit (body: Uint8Array): void {
    if (this.done) {
      return
    }
    this.init.onFrame(this.init.decode(body))
  }

  private fail (err: unknown): void {
    this.stop()
    const { errors, name } = this.init
    const e = errors.owns(err) ? err as Error : errors.badFrame(`${name} failed: ${(err as Error)?.message ?? String(err)}`, err)
    this.init.onError(e)
  }
}
