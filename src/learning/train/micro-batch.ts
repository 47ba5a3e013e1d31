/**
 * One micro-batch (one sequence) through a whole-model stage, as the
 * sequence of work units the trainer schedules: embed, forward per layer
 * (keeping each layer's input), the head's loss and gradient, backward per
 * layer in reverse. `microBatchUnits` yields the units one at a time so a
 * scheduler can run inference between them; `microBatchGradients` runs them
 * back to back.
 */
import { tf } from '../../model/qwen3/tf.ts'
import { ProjectionCache } from './stage.ts'
import type { TrainStage } from './stage.ts'
import type { Tensor2D } from '../../model/qwen3/tf.ts'

/** What a micro-batch's units leave: the sequence's loss once the head unit ran. */
export interface MicroBatchResult {
  loss: number
}

/**
 * The work units of one micro-batch on `stage` (embedding, every layer and
 * the head): each call of the returned generator's next() runs one unit
 * (the embedding and layer 0's forward share one). Gradients x `scale` are
 * added to the stage's accumulators. Tensors it holds are freed when it
 * finishes or is returned early.
 */
export function * microBatchUnits (stage: TrainStage, ids: ArrayLike<number>, scale: number, result: MicroBatchResult): Generator<string, void, void> {
  const inputs: Tensor2D[] = []
  const cache = new ProjectionCache()
  let dy: Tensor2D | null = null
  try {
    let x = stage.embed(ids)
    for (let l = stage.start; l < stage.end; l++) {
      inputs.push(x)
      x = stage.forwardLayer(l, x, cache)
      yield `forward ${l}`
    }
    inputs.push(x)
    const head = stage.headLoss(x, ids, scale)
    result.loss = head.loss
    dy = head.dh
    yield 'head'
    for (let l = stage.end - 1; l >= stage.start; l--) {
      const dx = stage.backwardLayer(l, inputs[l - stage.start], dy, scale, cache)
      dy.dispose()
      dy = dx
      yield `backward ${l}`
    }
  } finally {
    tf.dispose(inputs)
    cache.dispose()
    dy?.dispose()
  }
}

/** Runs one micro-batch's units back to back; returns its loss. */
export function microBatchGradients (stage: TrainStage, ids: ArrayLike<number>, scale: number): number {
  const result: MicroBatchResult = { loss: NaN }
  const units = microBatchUnits(stage, ids, scale, result)
  let done = false
  while (!done) {
    // the units run as the generator advances
    done = units.next().done === true
  }
  return result.loss
}

/**
 * The sequence's mean next-token cross-entropy under the current weights
 * (forward only) as work units: the embedding with layer 0's forward, each
 * later layer's forward, then the head's loss (into `out.loss`), one per
 * next(), so an eval is cut like training (one layer x one sequence) and
 * inference waits at most one layer's forward behind it. The input of a
 * layer is freed once its output exists; what it holds is freed when it
 * finishes or is returned early.
 */
export function * sequenceLossUnits (stage: TrainStage, ids: ArrayLike<number>, out: MicroBatchResult): Generator<string, void, void> {
  let x = stage.embed(ids)
  try {
    for (let l = stage.start; l < stage.end; l++) {
      const y = stage.forwardLayer(l, x)
      x.dispose()
      x = y
      yield `eval forward ${l}`
    }
    out.loss = stage.headLoss(x, ids).loss
    yield 'eval head'
  } finally {
    x.dispose()
  }
}

/** The sequence's mean next-token cross-entropy under the current weights (forward only): sequenceLossUnits back to back. */
export function sequenceLoss (stage: TrainStage, ids: ArrayLike<number>): number {
  const out: MicroBatchResult = { loss: NaN }
  const units = sequenceLossUnits(stage, ids, out)
  let done = false
  while (!done) {
    done = units.next().done === true
  }
  return out.loss
}
