/**
 * The train/eval windows of a dataset's token stream (protocols/dataset.md):
 * every sequence cut on its own into windows of `splitTokens` tokens, window
 * w eval iff its split hash is below `evalPermille`; and the eval-window
 * sample a validator draws from a seed.
 */
import { sequenceLengths, splitWindows } from '../protocols/dataset.ts'
import { sampleIndices } from '../protocols/sample.ts'
import type { DatasetSplit, TokenStream } from '../protocols/dataset.ts'

/** A dataset's token stream with its split. */
export interface DatasetWindows {
  /** the Dataset block id */
  datasetId: Uint8Array
  stream: TokenStream
  split: DatasetSplit
}

/** The windows of `stream` for the dataset `datasetId` with the header's split fields. */
export function datasetWindows (datasetId: Uint8Array, stream: TokenStream, params: { splitTokens: number, evalPermille: number }): DatasetWindows {
  const split = splitWindows({ datasetId, sequenceLengths: sequenceLengths(stream), splitTokens: params.splitTokens, evalPermille: params.evalPermille })
  return { datasetId, stream, split }
}

/** The tokens of window `w` (a view into the stream, not a copy). */
export function windowTokens (windows: DatasetWindows, w: number): Uint32Array {
  const { split, stream } = windows
  if (!Number.isInteger(w) || w < 0 || w >= split.count) {
    throw new RangeError(`window ${w} out of range 0..${split.count - 1}`)
  }
  const start = split.starts[w]
  return stream.tokens.subarray(start, start + split.lengths[w])
}

/**
 * The eval windows a validator measures: the first min(m, eval windows) of a
 * forward Fisher-Yates shuffle of the eval window numbers (ascending), driven
 * by the sha256-counter PRNG keyed with sha256(seed). Deterministic in
 * (dataset, seed, m); a smaller m gives a prefix of a larger one's sample.
 * Returns window numbers, in sample order.
 */
export function sampleEvalWindows (windows: DatasetWindows | DatasetSplit, seed: Uint8Array, m: number): number[] {
  const split = 'split' in windows ? windows.split : windows
  return sampleIndices(split.evalWindows, seed, m)
}
