/**
 * Splits a byte stream into newline-terminated lines with a hard cap on line
 * length. A line over the cap is reported once through `onOverflow` and its
 * remaining bytes are dropped as they arrive, up to the next newline, so an
 * endless line costs no more memory than the cap.
 */
export interface LineSplitterInit {
  maxLineBytes: number
  onLine(line: Buffer): void
  onOverflow(): void
}

const NEWLINE = 0x0a
const CR = 0x0d

export class LineSplitter {
  private readonly maxLineBytes: number
  private readonly onLine: (line: Buffer) => void
  private readonly onOverflow: () => void
  private parts: Buffer[]
  private size: number
  private discarding: boolean

  constructor (init: LineSplitterInit) {
    this.maxLineBytes = init.maxLineBytes
    this.onLine = init.onLine
    this.onOverflow = init.onOverflow
    this.parts = []
    this.size = 0
    this.discarding = false
  }

  /** bytes of the current unfinished line held in memory */
  get buffered (): number {
    return this.size
  }

  push (chunk: Buffer): void {
    let start = 0
    while (start <= chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start)
      if (nl === -1) {
        this.append(chunk.subarray(start))
        return
      }
      const piece = chunk.subarray(start, nl)
      start = nl + 1
      if (this.discarding) {
        this.discarding = false
        continue
      }
      if (this.size + piece.length > this.maxLineBytes) {
        this.reset()
        this.onOverflow()
        continue
      }
      let line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece])
      this.reset()
      if (line.length > 0 && line[line.length - 1] === CR) {
        line = line.subarray(0, line.length - 1)
      }
      if (line.length > 0) {
        this.onLine(line)
      }
    }
  }

  /** the unterminated tail at end of input, treated as a last line */
  end (): void {
    if (!this.discarding && this.size > 0) {
      const line = Buffer.concat(this.parts)
      this.reset()
      this.onLine(line)
    }
    this.reset()
    this.discarding = false
  }

  private append (rest: Buffer): void {
    if (this.discarding || rest.length === 0) {
      return
    }
    if (this.size + rest.length > this.maxLineBytes) {
      this.reset()
      this.discarding = true
      this.onOverflow()
      return
    }
    this.parts.push(rest)
    this.size += rest.length
  }

  private reset (): void {
    this.parts = []
    this.size = 0
  }
}
