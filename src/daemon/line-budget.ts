/**
 * One budget of bytes shared by the unfinished request lines of every IPC
 * connection: a line splitter reserves bytes before it holds them and gives
 * them back when the line completes or is dropped, so the sum held never
 * passes `maxBytes` whatever the number of connections.
 */
import type { LineBudget } from './line-splitter.ts'

export class SharedLineBudget implements LineBudget {
  readonly maxBytes: number
  private usedBytes: number
  private peakBytes: number

  constructor (maxBytes: number) {
    this.maxBytes = maxBytes
    this.usedBytes = 0
    this.peakBytes = 0
  }

  /** bytes reserved now */
  get used (): number {
    return this.usedBytes
  }

  /** the most bytes reserved at any time (never more than maxBytes) */
  get peak (): number {
    return this.peakBytes
  }

  reserve (bytes: number): boolean {
    if (this.usedBytes + bytes > this.maxBytes) {
      return false
    }
    this.usedBytes += bytes
    this.peakBytes = Math.max(this.peakBytes, this.usedBytes)
    return true
  }

  release (bytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - bytes)
  }
}
