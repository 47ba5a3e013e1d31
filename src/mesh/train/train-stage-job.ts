/**
 * One training job on a train stage: a TrainStage of the job's layers (and
 * the head when the job's last stage), the micro-batches of the current
 * step held between their FORWARD and BACKWARD (each layer's input, the
 * activations the forward units keep for the hand-written backward, and on
 * the head stage dL/dh),
 * and the step counter. Work comes as generators of work units (one layer x
 * one micro-batch) for the service's MicroStepScheduler.
 *
 * Ordering: within a step, FORWARD of every micro-batch, then BACKWARD of
 * each, then SUM_SQUARES, then STEP (which moves to the next step); a
 * request out of that order is refused BAD_REQUEST and changes nothing.
 * Gradients accumulate in the order BACKWARDs arrive, so a driver that sends
 * them in micro-batch order gets a one-process job's sums bit for bit.
 * Memory: a FORWARD that would take the bytes the job holds past
 * `maxBytes` is refused BUSY before any work.
 */
import { adamwStep, sumSquares } from '../../learning/train/adamw.ts'
import { ProjectionCache } from '../../learning/train/stage.ts'
import { tf } from '../../model/qwen3/tf.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { TrainWireError } from '../../protocols/train.ts'
import { allFinite } from './train-frames.ts'
import type { AdamWOptions } from '../../learning/train/adamw.ts'
import type { TrainStage } from '../../learning/train/stage.ts'
import type { Tensor2D } from '../../model/qwen3/tf.ts'
import type { F32Tensor, TensorState } from '../../protocols/train.ts'

export function refuse (code: number, message: string): TrainProtocolError {
  return new TrainProtocolError(TrainProtocolErrorCode.REFUSED, message, { remoteCode: code })
}

interface Held {
  inputs: Tensor2D[]
  cache: ProjectionCache
  dh: Tensor2D | null
  bytes: number
}

export interface TrainStageJobInit {
  id: string
  stage: TrainStage
  optimizer: AdamWOptions
  batch: number
  maxBytes: number
}

export class TrainStageJob {
  readonly id: string
  readonly stage: TrainStage
  /** the step in progress (1-based) */
  step: number
  /** bytes of activations held now */
  heldBytes: number
  private readonly optimizer: AdamWOptions
  private readonly batch: number
  private readonly maxBytes: number
  private readonly held: Map<number, Held>
  private forwards: number
  private backwards: number
  private squared: boolean

  constructor (init: TrainStageJobInit) {
    this.id = init.id
    this.stage = init.stage
    this.optimizer = init.optimizer
    this.batch = init.batch
    this.maxBytes = init.maxBytes
    this.held = new Map()
    this.step = 1
    this.heldBytes = 0
    this.forwards = 0
    this.backwards = 0
    this.squared = false
  }

  /** Bytes a micro-batch of `t` tokens holds here until its BACKWARD. */
  bytesPerMicroBatch (t: number): number {
    const c = this.stage.config
    const layers = this.stage.end - this.stage.start
    // each layer's input and the stage's output (+ dL/dh on the head stage), plus what the forward units keep for the backward
    return 4 * t * c.hiddenSize * (layers + 1 + (this.stage.hasHead ? 1 : 0)) + this.stage.activationBytes(t)
  }

  private expectStep (step: number, what: string): void {
    if (step !== this.step) {
      throw refuse(TrainWireError.BAD_REQUEST, `${what} for step ${step}, the job is at step ${this.step}`)
    }
  }

  private tensor (t: F32Tensor, what: string): Tensor2D {
    if (t.cols !== this.stage.config.hiddenSize || t.rows < 2) {
      throw refuse(TrainWireError.BAD_REQUEST, `${what} is [${t.rows}, ${t.cols}], expected [T >= 2, ${this.stage.config.hiddenSize}]`)
    }
    if (!allFinite(t.data)) {
      throw refuse(TrainWireError.NON_FINITE, `${what} holds a non-finite value: refused`)
    }
    return tf.tensor2d(t.data, [t.rows, t.cols])
  }

  /**
   * FORWARD units of micro-batch `micro`: every layer, then on the head
   * stage the loss and dL/dh (scaled 1 / batch). `out` gets the output
   * activations, or the loss on the head stage.
   */
  * forward (step: number, micro: number, ids: Uint32Array, x: F32Tensor, out: { x?: F32Tensor, loss?: number }): Generator<string, void, void> {
    this.expectStep(step, 'FORWARD')
    if (this.squared || this.backwards > 0 || this.held.has(micro) || micro >= this.batch || this.forwards >= this.batch) {
      throw refuse(TrainWireError.BAD_REQUEST, `FORWARD of micro-batch ${micro} is out of order (step ${step}: ${this.forwards} forwards, ${this.backwards} backwards of ${this.batch})`)
    }
    if (ids.length !== x.rows) {
      throw refuse(TrainWireError.BAD_REQUEST, `${ids.length} token ids for ${x.rows} rows of activations`)
    }
    const bytes = this.bytesPerMicroBatch(x.rows)
    if (this.heldBytes + bytes > this.maxBytes) {
      throw refuse(TrainWireError.BUSY, `micro-batch ${micro} would hold ${this.heldBytes + bytes} bytes, past the job's bound of ${this.maxBytes}`)
    }
    const h: Held = { inputs: [], cache: new ProjectionCache(), dh: null, bytes }
    let cur: Tensor2D | null = this.tensor(x, 'the activations')
    try {
      for (let l = this.stage.start; l < this.stage.end; l++) {
        h.inputs.push(cur)
        cur = this.stage.forwardLayer(l, cur, h.cache)
        yield `forward ${l}`
      }
      if (this.stage.hasHead) {
        h.inputs.push(cur)
        const r = this.stage.headLoss(cur, ids, 1 / this.batch)
        cur = null
        h.dh = r.dh
        out.loss = r.loss
        yield 'head'
      } else {
        out.x = { rows: x.rows, cols: x.cols, data: cur.dataSync() as Float32Array }
        cur.dispose()
        cur = null
      }
    } catch (err) {
      cur?.dispose()
      this.drop(h)
      throw err
    }
    this.held.set(micro, h)
    this.heldBytes += bytes
    this.forwards++
  }

  /**
   * EVAL units: the layers (and the head's loss) on one sequence under the
   * current weights, forward only: nothing held, no gradient, the job's
   * state untouched (so allowed at any point of a step).
   */
  * evaluate (ids: Uint32Array, x: F32Tensor, out: { x?: F32Tensor, loss?: number }): Generator<string, void, void> {
    if (ids.length !== x.rows) {
      throw refuse(TrainWireError.BAD_REQUEST, `${ids.length} token ids for ${x.rows} rows of activations`)
    }
    let cur = this.tensor(x, 'the activations')
    try {
      for (let l = this.stage.start; l < this.stage.end; l++) {
        const y = this.stage.forwardLayer(l, cur)
        cur.dispose()
        cur = y
        yield `eval ${l}`
      }
      if (this.stage.hasHead) {
        out.loss = this.stage.headLoss(cur, ids).loss
        yield 'eval head'
      } else {
        out.x = { rows: x.rows, cols: x.cols, data: cur.dataSync() as Float32Array }
      }
    } finally {
      cur.dispose()
    }
  }

  /** BACKWARD units of micro-batch `micro` (every layer in reverse); `out` gets dL/dx of the stage's input. */
  * backward (step: number, micro: number, dy: F32Tensor, out: { x?: F32Tensor }): Generator<string, void, void> {
    this.expectStep(step, 'BACKWARD')
    const h = this.held.get(micro)
    if (h == null || this.forwards !== this.batch) {
      throw refuse(TrainWireError.BAD_REQUEST, `BACKWARD of micro-batch ${micro} before every FORWARD of step ${step} (${this.forwards} of ${this.batch}, this one ${h == null ? 'not ' : ''}held)`)
    }
    let g: Tensor2D
    if (this.stage.hasHead) {
      if (dy.rows !== 0) {
        throw refuse(TrainWireError.BAD_REQUEST, 'the head stage takes an empty gradient (it has dL/dh)')
      }
      g = h.dh as Tensor2D
      h.dh = null
    } else {
      g = this.tensor(dy, 'the activation gradient')
    }
    this.held.delete(micro)
    this.heldBytes -= h.bytes
    try {
      for (let l = this.stage.end - 1; l >= this.stage.start; l--) {
        const dx = this.stage.backwardLayer(l, h.inputs[l - this.stage.start], g, 1 / this.batch, h.cache)
        g.dispose()
        g = dx
        yield `backward ${l}`
      }
      out.x = { rows: g.shape[0], cols: g.shape[1], data: g.dataSync() as Float32Array }
    } finally {
      g.dispose()
      this.drop(h)
    }
    this.backwards++
  }

  /** The running sum of squares continued over this stage's gradients (after every BACKWARD of the step). */
  sumSquares (step: number, from: number): number {
    this.expectStep(step, 'SUM_SQUARES')
    if (this.backwards !== this.batch) {
      throw refuse(TrainWireError.BAD_REQUEST, `SUM_SQUARES before every BACKWARD of step ${step} (${this.backwards} of ${this.batch})`)
    }
    if (!Number.isFinite(from)) {
      throw refuse(TrainWireError.NON_FINITE, 'the running sum of squares is not finite')
    }
    this.squared = true
    return sumSquares(this.stage.params, from)
  }

  /** AdamW on this stage's tensors, clipped by the global total; the job moves to the next step. Returns the clip factor. */
  applyStep (step: number, globalSquares: number): number {
    this.expectStep(step, 'STEP')
    if (!this.squared) {
      throw refuse(TrainWireError.BAD_REQUEST, `STEP before SUM_SQUARES of step ${step}`)
    }
    if (!Number.isFinite(globalSquares) || globalSquares < 0) {
      throw refuse(TrainWireError.NON_FINITE, `the global sum of squares ${globalSquares} is not a finite non-negative number`)
    }
    const clip = adamwStep(this.stage.params, this.optimizer, step, globalSquares)
    this.step++
    this.forwards = 0
    this.backwards = 0
    this.squared = false
    return clip
  }

  /** The trainable state after the steps applied so far (copies): a checkpoint for the driver. Only between steps. */
  exportState (): { step: number, tensors: TensorState[] } {
    if (this.forwards > 0 || this.squared) {
      throw refuse(TrainWireError.BAD_REQUEST, `FETCH_STATE inside step ${this.step} (${this.forwards} forwards done): only between steps`)
    }
    return {
      step: this.step - 1,
      tensors: this.stage.params.map(p => ({ name: p.name, values: Float32Array.from(p.values), m: Float32Array.from(p.m), v: Float32Array.from(p.v) }))
    }
  }

  /**
   * Takes a checkpoint: every trainable tensor's values and moments, the job
   * at the start of step `step` + 1; whatever the step in progress held is
   * dropped and the gradients are zeroed (nothing of it is applied). Checked
   * whole before anything changes: names, order and lengths must be the
   * stage's, every value finite.
   */
  loadState (step: number, tensors: readonly TensorState[]): void {
    const params = this.stage.params
    if (tensors.length !== params.length) {
      throw refuse(TrainWireError.BAD_REQUEST, `a state of ${tensors.length} tensors for a stage of ${params.length}`)
    }
    for (let i = 0; i < params.length; i++) {
      const t = tensors[i]
      const n = params[i].values.length
      if (t.name !== params[i].name || t.values.length !== n || t.m.length !== n || t.v.length !== n) {
        throw refuse(TrainWireError.BAD_REQUEST, `state tensor ${i} is ${t.name} of ${t.values.length} values, the stage's is ${params[i].name} of ${n}`)
      }
      if (!allFinite(t.values) || !allFinite(t.m) || !allFinite(t.v)) {
        throw refuse(TrainWireError.NON_FINITE, `state tensor ${t.name} holds a non-finite value: refused`)
      }
    }
    for (const h of this.held.values()) {
      this.drop(h)
    }
    this.held.clear()
    this.heldBytes = 0
    for (let i = 0; i < params.length; i++) {
      params[i].restore(tensors[i].values, tensors[i].m, tensors[i].v)
    }
    this.step = step + 1
    this.forwards = 0
    this.backwards = 0
    this.squared = false
  }

  private drop (h: Held): void {
    tf.dispose(h.inputs)
    h.inputs.length = 0
    h.cache.dispose()
    h.dh?.dispose()
    h.dh = null
  }

  dispose (): void {
    for (const h of this.held.values()) {
      this.drop(h)
    }
    this.held.clear()
    this.heldBytes = 0
    this.stage.dispose()
  }
}
