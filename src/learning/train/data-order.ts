/**
 * The order a training job reads its sequences in: the dataset's train
 * windows (in window order), each cut into pieces of at most `seq` tokens
 * (a last piece of fewer than 2 tokens is dropped), then per epoch a
 * Fisher-Yates shuffle driven by Prng(seed) (one stream over all epochs).
 * The same windows, seq and seed give the same order on every machine.
 */
import { Prng } from '../../model/prng.ts'
import { TrainError, TrainErrorCode } from './errors.ts'

/** Pieces of at most `seq` tokens of each window, in order. */
export function cutSequences (windows: ReadonlyArray<ArrayLike<number>>, seq: number): Uint32Array[] {
  if (!Number.isSafeInteger(seq) || seq < 2) {
    throw new TrainError(TrainErrorCode.OPTION, `sequence length must be an integer >= 2, got ${seq}`)
  }
  const out: Uint32Array[] = []
  for (const w of windows) {
    const ids = Uint32Array.from(w)
    for (let o = 0; o + 2 <= ids.length; o += seq) {
      out.push(ids.subarray(o, Math.min(ids.length, o + seq)))
    }
  }
  return out
}

export class DataOrder {
  readonly sequences: readonly Uint32Array[]
  private readonly rng: Prng
  private order: number[]
  private next: number

  constructor (sequences: readonly Uint32Array[], seed: number) {
    if (sequences.length === 0) {
      throw new TrainError(TrainErrorCode.DATA, 'no training sequences (the dataset has no train window of >= 2 tokens)')
    }
    this.sequences = sequences
    this.rng = new Prng(seed)
    this.order = []
    this.next = 0
  }

  /** The next sequence of the stream. */
  take (): Uint32Array {
    if (this.next === this.order.length) {
      const order = Array.from(this.sequences.keys())
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng.next() * (i + 1))
        const t = order[i]
        order[i] = order[j]
        order[j] = t
      }
      this.order = order
      this.next = 0
    }
    return this.sequences[this.order[this.next++]]
  }
}
