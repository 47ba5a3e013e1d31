/**
 * Splits a byte stream into newline-terminated lines with a hard cap on line
 * length. A line over the cap is reported once through `onOverflow` and its
 * remaining bytes are dropped as they arrive, up to the next newline, so an
 * endless line costs no more memory than the cap.
 *
 * The unfinished line is held as exact-size copies of its pieces (a read's
 * buffer may be larger than the bytes read), so what it holds is what it counts.
 * With a `budget`, the bytes of the unfinished line are also reserved from it
 * before they are held (and given back when the line completes, is dropped or
 * the splitter is cleared); a reservation that does not fit drops the line as
 * an overlong one is, reported through `onBudgetExceeded`.
 *
 * Ordering: lines are delivered in stream order. `pause()` (also from inside
 * `onLine`) stops delivery after the current line; what is pushed meanwhile is
 * held unsplit, and `resume()` delivers it, then an `end()` that came while
 * paused.
 */
export interface LineBudget {
  /** take `bytes` more for an unfinished line; false when they do not fit (nothing taken) */
  reserve(bytes: number): boolean
  /** give back bytes taken by reserve */
  release(bytes: number): void
}

export interface LineSplitterInit {
  maxLineBytes: number
  onLine(line: Buffer): void
  onOverflow(): void
  budget?: LineBudget
  /** the budget refused the unfinished line's growth (default: onOverflow) */
  onBudgetExceeded?(): void
}

const NEWLINE = 0x0a
const CR = 0x0d

export class LineSplitter {
  private readonly maxLineBytes: number
  private readonly onLine: (line: Buffer) => void
  private readonly onOverflow: () => void
  private readonly budget: LineBudget | undefined
  private readonly onBudgetExceeded: () => void
  private parts: Buffer[]
  private size: number
  private discarding: boolean
  private paused: boolean
  /** chunks pushed while paused (and the unsplit rest of the one that paused), in order */
  private held: Buffer[]
  private heldSize: number
  private ending: boolean

  constructor (init: LineSplitterInit) {
    this.maxLineBytes = init.maxLineBytes
    this.onLine = init.onLine
    this.onOverflow = init.onOverflow
    this.budget = init.budget
    this.onBudgetExceeded = init.onBudgetExceeded ?? init.onOverflow
    this.parts = []
    this.size = 0
    this.discarding = false
    this.paused = false
    this.held = []
    this.heldSize = 0
    this.ending = false
  }

  /** bytes of the current unfinished line held in memory */
  get buffered (): number {
    return this.size
  }

  /** bytes pushed while paused, not split yet */
  get heldBytes (): number {
    return this.heldSize
  }

  get isPaused (): boolean {
    return this.paused
  }

  /** nothing held and no end waiting: every byte pushed so far was split */
  get drained (): boolean {
    return this.heldSize === 0 && !this.ending
  }

  push (chunk: Buffer): void {
    if (this.paused) {
      this.hold(chunk)
      return
    }
    this.split(chunk)
  }

  /** stop delivering lines after the current one until resume() */
  pause (): void {
    this.paused = true
  }

  /** deliver what was held while paused (until paused again), then a pending end() */
  resume (): void {
    this.paused = false
    while (!this.paused && this.held.length > 0) {
      const chunk = this.held.shift() as Buffer
      this.heldSize -= chunk.length
      this.split(chunk)
    }
    if (!this.paused && this.ending) {
      this.ending = false
      this.finish()
    }
  }

  /** the unterminated tail at end of input, treated as a last line (after what is held, when paused) */
  end (): void {
    if (this.paused || this.held.length > 0) {
      this.ending = true
      return
    }
    this.finish()
  }

  /** drop everything held and give back the budget (the stream is gone) */
  clear (): void {
    this.reset()
    this.held = []
    this.heldSize = 0
    this.discarding = false
    this.ending = false
  }

  private split (chunk: Buffer): void {
    let start = 0
    while (start <= chunk.length) {
      if (this.paused) {
        this.hold(chunk.subarray(start))
        return
      }
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

  private finish (): void {
    if (!this.discarding && this.size > 0) {
      const line = Buffer.concat(this.parts)
      this.reset()
      this.onLine(line)
    }
    this.reset()
    this.discarding = false
  }

  private hold (rest: Buffer): void {
    if (rest.length > 0) {
      this.held.push(rest)
      this.heldSize += rest.length
    }
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
    if (this.budget != null && !this.budget.reserve(rest.length)) {
      this.reset()
      this.discarding = true
      this.onBudgetExceeded()
      return
    }
    // a socket read's buffer is often larger than what it read: hold a copy of
    // exactly the bytes, or the held line would keep ~1.7x its size alive
    this.parts.push(rest.byteLength < rest.buffer.byteLength ? Buffer.from(rest) : rest)
    this.size += rest.length
  }

  private reset (): void {
    if (this.size > 0) {
      this.budget?.release(this.size)
    }
    this.parts = []
    this.size = 0
  }
}
