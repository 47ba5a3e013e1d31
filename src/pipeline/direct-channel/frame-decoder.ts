/**
 * Splits a byte stream into unsigned-varint length-prefixed frames (the
 * /bly/infer/1.0.0 framing). A frame that lies inside one chunk is handed
 * out as a view of that chunk (no copy); one that spans chunks is copied
 * once, straight into a buffer of its final size allocated when its length
 * is known (no growing buffer, no concatenation of lists).
 */
import { PipelineError, PipelineErrorCode } from '../errors.ts'

export class FrameDecoder {
  private readonly maxFrameBytes: number
  /** length prefix being read */
  private varint: number
  private varintShift: number
  /** frame being filled across chunks, or undefined */
  private partial?: Uint8Array
  private filled: number

  constructor (maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes
    this.varint = 0
    this.varintShift = 0
    this.filled = 0
  }

  /** True when no partial frame or prefix is pending (a clean place for the stream to end). */
  get idle (): boolean {
    return this.partial == null && this.varintShift === 0
  }

  /**
   * Feed one chunk; `emit` is called for each whole frame in order. A view
   * handed to `emit` stays valid (chunks are not reused). Throws a
   * PipelineError BAD_FRAME on a bad or oversize length prefix.
   */
  push (chunk: Uint8Array, emit: (frame: Uint8Array) => void): void {
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.partial != null) {
        const take = Math.min(this.partial.length - this.filled, n - i)
        this.partial.set(chunk.subarray(i, i + take), this.filled)
        this.filled += take
        i += take
        if (this.filled === this.partial.length) {
          const frame = this.partial
          this.partial = undefined
          this.filled = 0
          emit(frame)
        }
        continue
      }
      // length prefix, byte by byte (it may span chunks)
      const b = chunk[i++]
      this.varint += (b & 0x7f) * 2 ** this.varintShift
      this.varintShift += 7
      if ((b & 0x80) !== 0) {
        if (this.varintShift > 28) {
          throw new PipelineError(PipelineErrorCode.BAD_FRAME, 'frame length prefix is too long')
        }
        continue
      }
      const len = this.varint
      this.varint = 0
      this.varintShift = 0
      if (len > this.maxFrameBytes) {
        throw new PipelineError(PipelineErrorCode.BAD_FRAME, `frame of ${len} bytes is over the ${this.maxFrameBytes} byte limit`)
      }
      if (len === 0) {
        throw new PipelineError(PipelineErrorCode.BAD_FRAME, 'empty frame')
      }
      if (n - i >= len) {
        const frame = chunk.subarray(i, i + len)
        i += len
        emit(frame)
      } else {
        this.partial = new Uint8Array(len)
        this.filled = 0
      }
    }
  }
}
