/**
 * The deadline of one step sent to a remote worker: a pipeline stage's
 * FORWARD today, a training worker's step when training lands. Nothing here
 * knows what a step computes: a step has `rows` (positions, tokens) and
 * takes some milliseconds on some worker (a key the caller chooses, e.g.
 * peer and layers).
 *
 * The rule: deadline(worker, rows) = clamp(multiplier x expected, floor,
 * ceiling(rows)). `expected` is, once the worker has answered steps in this
 * session, the median over its last `window` steps (rows_i, ms_i) of
 * ms_i x max(1, rows / rows_i): each term bounds a fixed-plus-per-row cost
 * from above (a step takes no longer than a larger one took, and at most
 * as long per row as a smaller one did), so a prefill's time bounds a
 * decode step and a decode step's time scales to a prefill. Before its
 * first step it is the worker's announced speed (ms per row, an upper bound
 * is fine) times rows; with neither, the deadline is the ceiling. The
 * ceiling is ceilingMs and the floor floorMs per ceilingRows rows, rounded
 * up (the ceiling is the fixed deadline of old, stepTimeoutMs; a floor as
 * high as the ceiling gives that rule back). The floor keeps a fast worker's deadline above
 * the jitter of a shared host (timers, GC, the network); the multiplier
 * keeps a worker that slows down by less than that factor (more load, a
 * longer context) from being given up on.
 *
 * Records are per instance: one instance per session, so no session's
 * figures leak into another's.
 */
import { PipelineError, PipelineErrorCode } from './errors.ts'

export interface StepDeadlineInit {
  /** the ceiling: a step gets at most this many ms per `ceilingRows` rows (rounded up) */
  ceilingMs: number
  ceilingRows: number
  /** no deadline below this many ms per `ceilingRows` rows (capped by the ceiling) */
  floorMs: number
  /** a step may take this many times what is expected before its deadline passes */
  multiplier: number
  /** steps remembered per worker */
  window: number
}

interface Observation {
  rows: number
  ms: number
}

export class StepDeadlines {
  private readonly init: StepDeadlineInit
  private readonly seen: Map<string, Observation[]>

  constructor (init: StepDeadlineInit) {
    checkStepDeadlineInit(init)
    this.init = { ...init, window: Math.max(1, Math.floor(init.window)) }
    this.seen = new Map()
  }

  /** A step of `rows` rows on `worker` answered after `ms` milliseconds. */
  record (worker: string, rows: number, ms: number): void {
    if (!(rows > 0) || !(ms >= 0) || !Number.isFinite(ms)) {
      return
    }
    let list = this.seen.get(worker)
    if (list == null) {
      list = []
      this.seen.set(worker, list)
    }
    list.push({ rows, ms })
    if (list.length > this.init.window) {
      list.shift()
    }
  }

  /** Steps of `worker` remembered. */
  steps (worker: string): number {
    return this.seen.get(worker)?.length ?? 0
  }

  /**
   * Milliseconds a step of `rows` rows on `worker` is expected to take: from
   * its recent steps, else from `msPerRow` (its announced speed), else
   * undefined.
   */
  expected (worker: string, rows: number, msPerRow?: number): number | undefined {
    const list = this.seen.get(worker)
    if (list != null && list.length > 0) {
      return median(list.map(o => o.ms * Math.max(1, rows / o.rows)))
    }
    if (msPerRow != null && Number.isFinite(msPerRow) && msPerRow > 0) {
      return msPerRow * rows
    }
    return undefined
  }

  /** The longest a step of `rows` rows may take: ceilingMs per ceilingRows rows. */
  ceiling (rows: number): number {
    return this.init.ceilingMs * this.units(rows)
  }

  /** The shortest deadline of a step of `rows` rows: floorMs per ceilingRows rows (at most the ceiling). */
  floor (rows: number): number {
    return Math.min(this.ceiling(rows), this.init.floorMs * this.units(rows))
  }

  /** The deadline of a step of `rows` rows on `worker` (see the rule above), in whole ms. */
  deadline (worker: string, rows: number, msPerRow?: number): number {
    const ceiling = this.ceiling(rows)
    const expected = this.expected(worker, rows, msPerRow)
    if (expected == null) {
      return ceiling
    }
    return Math.ceil(Math.min(ceiling, Math.max(this.floor(rows), this.init.multiplier * expected)))
  }

  private units (rows: number): number {
    return Math.max(1, Math.ceil(rows / this.init.ceilingRows))
  }
}

/** Throws ERR_PIPELINE_INVALID_ARGUMENT unless every parameter is a positive number. */
export function checkStepDeadlineInit (init: StepDeadlineInit): void {
  for (const k of ['ceilingMs', 'ceilingRows', 'floorMs', 'multiplier', 'window'] as const) {
    if (!Number.isFinite(init[k]) || init[k] <= 0) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `step deadline ${k} must be a positive number, got ${init[k]}`)
    }
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
