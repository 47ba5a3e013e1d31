/**
 * Per-window eval losses of a whole model over chosen windows of a
 * dataset, one window at a time (eval-loss.ts: a fresh session each), with
 * a pause hook between windows so a background caller (the validator)
 * yields to more urgent work, and an abort signal checked between windows.
 */
import { windowTokens } from '../dataset-windows.ts'
import { windowLosses } from '../eval-loss.ts'
import type { LayerRange } from '../../model/qwen3/layer-range.ts'
import type { DatasetWindows } from '../dataset-windows.ts'

export interface MeasureOptions {
  /** awaited before each window (the validator waits there while inference is busy) */
  pause?(): Promise<void>
  signal?: AbortSignal
}

/** The mean cross-entropy (nats) of `model` on each of `windows` (window numbers of `data`), in order. */
export async function measureWindows (model: LayerRange, data: DatasetWindows, windows: readonly number[], options: MeasureOptions = {}): Promise<number[]> {
  const out: number[] = []
  for (const w of windows) {
    options.signal?.throwIfAborted()
    await options.pause?.()
    const [loss] = await windowLosses(model, [windowTokens(data, w)])
    out.push(loss)
  }
  return out
}
