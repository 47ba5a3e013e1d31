/**
 * The bound on the memory a stage's partially received frames hold, over
 * all its streams and direct channels together. A frame decoder charges a
 * frame's buffer (its declared length, allocated when the length prefix
 * arrives) when the buffer outlives the read that started it, and gives the
 * charge back when the frame completes or the decoder is reset (its stream
 * ended or was aborted). A charge that does not fit is refused: the decoder
 * drops the frame and its stream is ended. One budget per stage; nothing
 * here is shared between stages.
 */

export class PartialFrameBudget {
  /** the most bytes partial frames may hold together */
  readonly limit: number
  /** bytes held now */
  private heldBytes: number
  /** the most held at any time */
  private peakBytes: number
  /** charges refused */
  private refusedCount: number

  constructor (limit: number) {
    this.limit = limit
    this.heldBytes = 0
    this.peakBytes = 0
    this.refusedCount = 0
  }

  get held (): number {
    return this.heldBytes
  }

  get peak (): number {
    return this.peakBytes
  }

  get refused (): number {
    return this.refusedCount
  }

  /** Charge `bytes`; false (nothing charged, counted as refused) when they do not fit. */
  tryCharge (bytes: number): boolean {
    if (this.heldBytes + bytes > this.limit) {
      this.refusedCount++
      return false
    }
    this.heldBytes += bytes
    if (this.heldBytes > this.peakBytes) {
      this.peakBytes = this.heldBytes
    }
    return true
  }

  /** Give back `bytes` charged before. */
  release (bytes: number): void {
    this.heldBytes = Math.max(0, this.heldBytes - bytes)
  }
}
