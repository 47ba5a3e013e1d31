/**
 * What a pipeline session sent each stage, kept for replay onto another
 * peer: one list of FORWARD inputs per stage, contiguous from position 0,
 * cut back with the session on truncate.
 */
import { PipelineError, PipelineErrorCode } from './errors.ts'

/** One FORWARD sent to a stage, kept for replay. */
export interface StageInput {
  startPos: number
  rows: number
  /** [rows, hidden] f32 */
  data: Float32Array
}

/** The inputs of one stage as one [rows, hidden] tensor from position 0 (they must be contiguous). */
export function concatInputs (inputs: readonly StageInput[], hidden: number): { rows: number, data: Float32Array } {
  let rows = 0
  for (const x of inputs) {
    if (x.startPos !== rows) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `stage history has a gap: input at ${x.startPos} after ${rows} positions`)
    }
    rows += x.rows
  }
  if (inputs.length === 1) {
    return { rows, data: inputs[0].data }
  }
  const data = new Float32Array(rows * hidden)
  for (const x of inputs) {
    data.set(x.data.subarray(0, x.rows * hidden), x.startPos * hidden)
  }
  return { rows, data }
}

/** Forgets the inputs of `list` at positions `length` and past (in place; the last kept one is cut to end at `length`). */
export function truncateInputs (list: StageInput[], length: number, hidden: number): void {
  while (list.length > 0 && list[list.length - 1].startPos >= length) {
    list.pop()
  }
  const last = list[list.length - 1]
  if (last != null && last.startPos + last.rows > length) {
    const rows = length - last.startPos
    list[list.length - 1] = { startPos: last.startPos, rows, data: last.data.subarray(0, rows * hidden) }
  }
}
