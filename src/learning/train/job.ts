/**
 * A training job on one whole-model stage: `steps` optimizer steps, each over
 * `batch` micro-batches (sequences from DataOrder) whose gradients are
 * averaged, then an AdamW update (clipped by global norm, warmed up). Its
 * units() are the work units a MicroStepScheduler runs, one per next():
 * per micro-batch the layer-by-layer forward, the head, the layer-by-layer
 * backward (micro-batch.ts), and per step the optimizer update (in
 * parts of at most OPTIMIZER_UNIT_ELEMENTS elements). The result
 * depends only on the weights, the sequences, the options and the seed.
 */
import { adamwStep, ADAMW_DEFAULTS, sumSquares } from './adamw.ts'
import { OPTIMIZER_UNIT_ELEMENTS } from './constants.ts'
import { TrainError, TrainErrorCode } from './errors.ts'
import { microBatchUnits, sequenceLossUnits } from './micro-batch.ts'
import type { AdamWOptions } from './adamw.ts'
import type { DataOrder } from './data-order.ts'
import type { MicroBatchResult } from './micro-batch.ts'
import type { TrainParam } from './param.ts'
import type { TrainStage } from './stage.ts'

/**
 * The trainable tensors in order, cut into runs of at most
 * OPTIMIZER_UNIT_ELEMENTS elements (a bigger tensor alone): the optimizer
 * update's work units, so a --full update does not hold inference back
 * for the whole model's AdamW pass.
 */
export function optimizerChunks (params: readonly TrainParam[], max: number = OPTIMIZER_UNIT_ELEMENTS): TrainParam[][] {
  const chunks: TrainParam[][] = []
  let size = 0
  for (const p of params) {
    if (chunks.length === 0 || size + p.values.length > max) {
      chunks.push([])
      size = 0
    }
    chunks[chunks.length - 1].push(p)
    size += p.values.length
  }
  return chunks
}

export interface TrainJobInit {
  stage: TrainStage
  data: DataOrder
  steps: number
  batch: number
  optimizer: Partial<AdamWOptions> & { lr: number }
  /** most elements one optimizer unit updates (default OPTIMIZER_UNIT_ELEMENTS; the result does not depend on it) */
  optimizerUnitElements?: number
}

export interface StepReport {
  /** 1-based */
  step: number
  /** mean loss of the step's micro-batches (before its update) */
  loss: number
  /** tokens of the step's micro-batches */
  tokens: number
  /** global gradient norm before clipping */
  gradNorm: number
}

export class TrainJob {
  readonly stage: TrainStage
  readonly steps: number
  readonly batch: number
  readonly optimizer: AdamWOptions
  /** the mean training loss of each step done */
  readonly losses: number[]
  tokens: number
  private readonly data: DataOrder
  private readonly optimizerUnitElements: number

  constructor (init: TrainJobInit) {
    if (!init.stage.hasEmbedding || !init.stage.hasHead || init.stage.start !== 0 || init.stage.end !== init.stage.config.numLayers) {
      throw new TrainError(TrainErrorCode.OPTION, 'a one-process job needs a stage of the whole model')
    }
    if (!Number.isSafeInteger(init.steps) || init.steps < 1) {
      throw new TrainError(TrainErrorCode.OPTION, `steps must be a positive integer, got ${init.steps}`)
    }
    if (!Number.isSafeInteger(init.batch) || init.batch < 1) {
      throw new TrainError(TrainErrorCode.OPTION, `batch must be a positive integer, got ${init.batch}`)
    }
    if (!(init.optimizer.lr > 0) || !Number.isFinite(init.optimizer.lr)) {
      throw new TrainError(TrainErrorCode.OPTION, `learning rate must be a positive number, got ${init.optimizer.lr}`)
    }
    this.stage = init.stage
    this.data = init.data
    this.steps = init.steps
    this.batch = init.batch
    this.optimizer = { ...ADAMW_DEFAULTS, ...init.optimizer }
    this.optimizerUnitElements = init.optimizerUnitElements ?? OPTIMIZER_UNIT_ELEMENTS
    if (!(this.optimizerUnitElements >= 1)) {
      throw new TrainError(TrainErrorCode.OPTION, `optimizerUnitElements must be at least 1, got ${this.optimizerUnitElements}`)
    }
    this.losses = []
    this.tokens = 0
  }

  /**
   * The job's work units; `onStep` is called after each optimizer update
   * (inside that unit). Throws NON_FINITE when a loss or the gradient norm
   * is not finite (nothing of that step is applied).
   */
  * units (onStep?: (r: StepReport) => void): Generator<string, void, void> {
    for (let step = this.losses.length + 1; step <= this.steps; step++) {
      let sum = 0
      let tokens = 0
      for (let b = 0; b < this.batch; b++) {
        const ids = this.data.take()
        const result: MicroBatchResult = { loss: NaN }
        yield * microBatchUnits(this.stage, ids, 1 / this.batch, result)
        if (!Number.isFinite(result.loss)) {
          throw new TrainError(TrainErrorCode.NON_FINITE, `step ${step}: the loss is ${result.loss}`)
        }
        sum += result.loss
        tokens += ids.length
      }
      const squares = sumSquares(this.stage.params)
      if (!Number.isFinite(squares)) {
        throw new TrainError(TrainErrorCode.NON_FINITE, `step ${step}: the gradient norm is not finite`)
      }
      // the update in units of at most OPTIMIZER_UNIT_ELEMENTS elements (whole tensors, in order): each
      // tensor's update depends only on itself and the global norm, so the cut does not change a bit
      const chunks = optimizerChunks(this.stage.params, this.optimizerUnitElements)
      for (let i = 0; i < chunks.length - 1; i++) {
        adamwStep(chunks[i], this.optimizer, step, squares)
        yield 'optimizer part'
      }
      adamwStep(chunks[chunks.length - 1] ?? [], this.optimizer, step, squares)
      const loss = sum / this.batch
      this.losses.push(loss)
      this.tokens += tokens
      onStep?.({ step, loss, tokens, gradNorm: Math.sqrt(squares) })
      yield 'optimizer'
    }
  }

  /**
   * Mean loss over `sequences` under the current weights: per sequence, one
   * unit per layer's forward and one for the head (sequenceLossUnits).
   */
  * evalUnits (sequences: readonly Uint32Array[], out: { loss: number }): Generator<string, void, void> {
    let sum = 0
    for (const ids of sequences) {
      const one = { loss: NaN }
      yield * sequenceLossUnits(this.stage, ids, one)
      sum += one.loss
    }
    out.loss = sequences.length === 0 ? NaN : sum / sequences.length
  }
}
