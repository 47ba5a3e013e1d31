/**
 * Splits a byte stream into unsigned-varint length-prefixed frames (the
 * framing of /bly/infer/1.0.0, over libp2p streams and direct channels, and
 * of /bly/blocks/1.0.0). Two ways to feed it. `push(chunk)` takes chunks
 * the reader owns and never reuses (a socket's `data` events): a frame that
 * lies inside one chunk is handed out as a view of that chunk (no copy); one
 * that spans chunks is copied once, straight into a buffer of its final size
 * allocated when its length is known (no growing buffer, no concatenation of
 * lists). `readBuffer()` / `read()` serve a socket that reads into memory it
 * is given (node's `onread`): while a frame body is being assembled the
 * socket writes straight into the unfilled rest of it (no chunk allocated,
 * no copy in JS); between frames it writes into one reused scratch buffer,
 * out of which frames are copied.
 * Frame buffers are allocated without zero-filling: every byte is written
 * before the frame is handed out, and a frame that never completes is
 * dropped unseen.
 * A length prefix is at most 5 bytes (35 bits, far past any frame limit); a
 * longer one, a length over the limit or a length of 0 throws the protocol's
 * bad-frame error (FrameErrors.badFrame) at once, so a malformed prefix never
 * leaves the decoder waiting for more (libp2p's LengthPrefixedDecoder takes
 * an over-long varint for "need more bytes" and waits forever).
 * With a FrameBudget, a frame buffer still unfilled when a read returns is
 * charged to it (its whole length) until the frame completes or `reset()`
 * drops it; a charge that does not fit drops the frame and throws
 * FrameErrors.budgetFull. The owner calls `reset()` when its stream ends or
 * fails, which releases the buffer and the charge.
 */

/** How a protocol reports framing failures: its own error classes and codes. */
export interface FrameErrors {
  /** a malformed, oversize or empty frame (`cause`: what failed, when something threw) */
  badFrame(message: string, cause?: unknown): Error
  /** a partially received frame the FrameBudget refused */
  budgetFull(message: string): Error
}

/**
 * The bound on the bytes partially received frames hold, shared by the
 * decoders of one owner (pipeline/frame-budget.ts PartialFrameBudget).
 */
export interface FrameBudget {
  readonly limit: number
  readonly held: number
  /** charge `bytes`; false (nothing charged) when they do not fit */
  tryCharge(bytes: number): boolean
  /** give back `bytes` charged before */
  release(bytes: number): void
}

/** Scratch buffer for reads between frame bodies (node's TLS layer hands over at most 16 KiB per read). */
const SCRATCH_BYTES = 64 * 1024

/** An uninitialised buffer of `len` bytes, a plain Uint8Array over its own ArrayBuffer. */
function frameBuffer (len: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(len).buffer, 0, len)
}

/** Longest length prefix: 5 varint bytes carry 35 bits. */
const MAX_PREFIX_BYTES = 5

export class FrameDecoder {
  private readonly maxFrameBytes: number
  private readonly errors: FrameErrors
  private readonly budget?: FrameBudget
  /** bytes of `partial` charged to the budget (0 = not charged) */
  private charged: number
  /** reset() calls so far: a decode loop stops when one happens under it */
  private resets: number
  /** length prefix being read */
  private varint: number
  private varintShift: number
  /** frame being filled across chunks, or undefined */
  private partial?: Uint8Array
  private filled: number
  /** reused between reads in read-into mode */
  private scratch?: Uint8Array
  /** the buffer readBuffer() last returned */
  private target?: Uint8Array

  constructor (maxFrameBytes: number, errors: FrameErrors, budget?: FrameBudget) {
    this.maxFrameBytes = maxFrameBytes
    this.errors = errors
    this.budget = budget
    this.charged = 0
    this.resets = 0
    this.varint = 0
    this.varintShift = 0
    this.filled = 0
  }

  /** True when no partial frame or prefix is pending (a clean place for the stream to end). */
  get idle (): boolean {
    return this.partial == null && this.varintShift === 0
  }

  /**
   * Drop everything pending (the partial frame, the prefix, the scratch
   * buffer) and give its charge back to the budget. For a stream that ended
   * or failed; idempotent. Called from inside `emit`, it also ends the
   * push()/read() in progress: the rest of that chunk is dropped. The
   * decoder starts afresh if fed again.
   */
  reset (): void {
    this.resets++
    this.dropPartial()
    this.varint = 0
    this.varintShift = 0
    this.scratch = undefined
    this.target = undefined
  }

  private dropPartial (): void {
    this.partial = undefined
    this.filled = 0
    if (this.charged > 0) {
      this.budget?.release(this.charged)
      this.charged = 0
    }
  }

  /** The partial frame is whole: hand it out (its charge goes back first). */
  private complete (emit: (frame: Uint8Array) => void): void {
    const frame = this.partial as Uint8Array
    this.dropPartial()
    emit(frame)
  }

  /**
   * Feed one chunk; `emit` is called for each whole frame in order. A view
   * handed to `emit` stays valid (chunks are not reused). Throws
   * FrameErrors.badFrame on a bad or oversize length prefix.
   */
  push (chunk: Uint8Array, emit: (frame: Uint8Array) => void): void {
    this.decode(chunk, emit, false)
  }

  /**
   * Where the next read should land: the unfilled rest of the frame being
   * assembled, else the scratch buffer. Pass what the socket read into it to
   * `read()` before asking again.
   */
  readBuffer (): Uint8Array {
    if (this.partial != null) {
      this.target = this.partial.subarray(this.filled)
    } else {
      this.scratch ??= new Uint8Array(SCRATCH_BYTES)
      this.target = this.scratch
    }
    return this.target
  }

  /**
   * `n` bytes were read into `buf` (the last `readBuffer()`); `emit` as for
   * push(). Frames never point into the scratch buffer.
   */
  read (buf: Uint8Array, n: number, emit: (frame: Uint8Array) => void): void {
    if (buf === this.target && this.partial != null && buf.buffer === this.partial.buffer) {
      this.filled += n
      if (this.filled === this.partial.length) {
        this.complete(emit)
      }
      return
    }
    this.decode(buf.subarray(0, n), emit, true)
  }

  /** `reused`: the chunk's memory is overwritten after this call, so frames are copied out of it. */
  private decode (chunk: Uint8Array, emit: (frame: Uint8Array) => void, reused: boolean): void {
    const resets = this.resets
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.partial != null) {
        const take = Math.min(this.partial.length - this.filled, n - i)
        this.partial.set(chunk.subarray(i, i + take), this.filled)
        this.filled += take
        i += take
        if (this.filled === this.partial.length) {
          this.complete(emit)
          if (this.resets !== resets) {
            return
          }
        }
        continue
      }
      // length prefix, byte by byte (it may span chunks)
      const b = chunk[i++]
      this.varint += (b & 0x7f) * 2 ** this.varintShift
      this.varintShift += 7
      if ((b & 0x80) !== 0) {
        if (this.varintShift >= 7 * MAX_PREFIX_BYTES) {
          throw this.errors.badFrame(`frame length prefix is longer than ${MAX_PREFIX_BYTES} bytes`)
        }
        continue
      }
      const len = this.varint
      this.varint = 0
      this.varintShift = 0
      if (len > this.maxFrameBytes) {
        throw this.errors.badFrame(`frame of ${len} bytes is over the ${this.maxFrameBytes} byte limit`)
      }
      if (len === 0) {
        throw this.errors.badFrame('empty frame')
      }
      if (n - i >= len && !reused) {
        const frame = chunk.subarray(i, i + len)
        i += len
        emit(frame)
        if (this.resets !== resets) {
          return
        }
      } else {
        this.partial = frameBuffer(len)
        this.filled = 0
      }
    }
    // a frame buffer that outlives this read is held: charge it
    if (this.partial != null && this.charged === 0 && this.budget != null) {
      const len = this.partial.length
      if (!this.budget.tryCharge(len)) {
        this.dropPartial()
        throw this.errors.budgetFull(`a frame of ${len} bytes would take the bytes held by partially received frames past their bound of ${this.budget.limit} (${this.budget.held} held)`)
      }
      this.charged = len
    }
  }
}
