/**
 * Garbage detection of pipeline-parallel training (issue 12 item 4): what a
 * stage answered in one step, the running history of a hop's honest
 * answers (the anomaly bound), the comparison of two holders' answers, the
 * seeded choice of sampled audits, and the recomputation of a stage's step
 * on another holder.
 *
 * The computation is deterministic: a holder given the same checkpoint
 * (LOAD_STATE) and the same inputs (the FORWARDs' activations, the
 * BACKWARDs' gradients, the running sum of squares) answers the same
 * activations, loss, input gradients and sum of squares; bit for bit on
 * the same backend. So another holder can audit a stage's step.
 */
import { Prng } from '../../model/prng.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { TrainFrameType } from '../../protocols/train.ts'
import { allFinite } from './train-frames.ts'
import type { TrainStageClient } from './train-stage-client.ts'
import type { F32Tensor, LossFrame, OpenJobFrame, ScalarFrame, StateFrame, TensorReplyFrame } from '../../protocols/train.ts'

/** What one stage was sent in one step (per micro-batch), kept by the driver for an audit. */
export interface StageInputs {
  ids: Uint32Array[]
  /** the FORWARD activations */
  xs: F32Tensor[]
  /** the BACKWARD gradients ([0, 0] for the head stage) */
  dys: F32Tensor[]
  /** the running sum of squares SUM_SQUARES carried */
  from: number
}

/** What one stage answered in one step. */
export interface StageAnswers {
  /** per micro-batch: the activations, or the loss on the head stage */
  outs: Array<F32Tensor | number>
  /** per micro-batch: the input gradient */
  grads: F32Tensor[]
  /** this stage's share of the sum of squares (SQUARES minus SUM_SQUARES) */
  own: number
}

export function emptyInputs (): StageInputs {
  return { ids: [], xs: [], dys: [], from: 0 }
}

export function emptyAnswers (): StageAnswers {
  return { outs: [], grads: [], own: 0 }
}

export function sumSq (a: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) {
    s += a[i] * a[i]
  }
  return s
}

/** The largest sum of squares of the input gradients answered. */
function gradSquares (a: StageAnswers): number {
  return a.grads.reduce((m, g) => Math.max(m, sumSq(g.data)), 0)
}

/**
 * A hop's answers of its last `window` accepted steps. An answer is
 * anomalous when the sum of squares of one of its input gradients, or its
 * share of the global sum of squares, is above `factor` times the largest
 * of the same measure over that window. Without history nothing is
 * anomalous (the first step of a job is covered by the first-step audit).
 */
export class AnswerHistory {
  private readonly window: number
  private readonly factor: number
  private readonly grads: number[]
  private readonly owns: number[]

  constructor (window: number, factor: number) {
    this.window = window
    this.factor = factor
    this.grads = []
    this.owns = []
  }

  /** Why `a` is anomalous, or null. */
  anomalous (a: StageAnswers): string | null {
    if (this.grads.length === 0) {
      return null
    }
    const g = gradSquares(a)
    const maxG = Math.max(...this.grads)
    if (g > this.factor * maxG) {
      return `an input gradient's sum of squares ${g.toExponential(3)} is over ${this.factor}x the largest of the last ${this.grads.length} steps (${maxG.toExponential(3)})`
    }
    const maxO = Math.max(...this.owns)
    if (a.own > this.factor * maxO) {
      return `its sum of squares ${a.own.toExponential(3)} is over ${this.factor}x the largest of the last ${this.owns.length} steps (${maxO.toExponential(3)})`
    }
    return null
  }

  accept (a: StageAnswers): void {
    this.grads.push(gradSquares(a))
    this.owns.push(a.own)
    if (this.grads.length > this.window) {
      this.grads.shift()
      this.owns.shift()
    }
  }
}

/** Relative L2 distance of `a` from `b` (0 when bitwise equal). */
function distance (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) {
    return Infinity
  }
  let d = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i] - b[i]
    d += x * x
  }
  return d === 0 ? 0 : Math.sqrt(d / Math.max(sumSq(b), 1e-30))
}

/** Where two holders' answers to the same step differ by more than `tolerance` (relative L2), or null when they agree. */
export function disagreement (a: StageAnswers, b: StageAnswers, tolerance: number): string | null {
  if (a.outs.length !== b.outs.length || a.grads.length !== b.grads.length) {
    return 'a different number of answers'
  }
  for (let i = 0; i < a.outs.length; i++) {
    const x = a.outs[i]
    const y = b.outs[i]
    const d = typeof x === 'number' || typeof y === 'number' ? distance([Number(x)], [Number(y)]) : distance(x.data, y.data)
    if (!(d <= tolerance)) {
      return `the ${typeof x === 'number' ? 'loss' : 'activations'} of micro-batch ${i} (relative distance ${d.toExponential(3)})`
    }
  }
  for (let i = 0; i < a.grads.length; i++) {
    const d = distance(a.grads[i].data, b.grads[i].data)
    if (!(d <= tolerance)) {
      return `the input gradient of micro-batch ${i} (relative distance ${d.toExponential(3)})`
    }
  }
  const d = distance([a.own], [b.own])
  if (!(d <= tolerance)) {
    return `the sum of squares (${a.own} vs ${b.own})`
  }
  return null
}

/** The hop audited anyway at `step` (seeded: the same on every retry of the step), or -1. */
export function sampledAudit (seed: number, step: number, rate: number, hops: number): number {
  const rng = new Prng((Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(step, 0x85ebca6b)) >>> 0)
  const draw = rng.next()
  const hop = Math.floor(rng.next() * hops)
  return draw < rate ? hop : -1
}

/**
 * Runs stage `stage`'s step again on `client` (a freshly opened stream to
 * another holder): OPEN_JOB, the checkpoint, every FORWARD and BACKWARD
 * with the inputs the stage was sent, SUM_SQUARES; then CLOSE. Its answers,
 * each checked finite (a non-finite one rejects NON_FINITE).
 */
export async function recompute (client: TrainStageClient, open: OpenJobFrame, checkpoint: StateFrame<typeof TrainFrameType.STATE>, step: number, inputs: StageInputs, head: boolean): Promise<StageAnswers> {
  const job = open.job
  const bad = (what: string): TrainProtocolError => new TrainProtocolError(TrainProtocolErrorCode.NON_FINITE, `auditor of stage ${client.stage} answered ${what} holding a non-finite value`, { stage: client.stage })
  await client.request(open, TrainFrameType.OPENED)
  await client.request({ type: TrainFrameType.LOAD_STATE, job, step: checkpoint.step, tensors: checkpoint.tensors }, TrainFrameType.LOADED)
  const out = emptyAnswers()
  for (let micro = 0; micro < inputs.xs.length; micro++) {
    const f = { type: TrainFrameType.FORWARD, job, step, micro, ids: inputs.ids[micro], x: inputs.xs[micro] } as const
    if (head) {
      const r = await client.request<LossFrame>(f, TrainFrameType.LOSS, step, micro)
      if (!Number.isFinite(r.loss)) {
        throw bad('a loss')
      }
      out.outs.push(r.loss)
    } else {
      const r = await client.request<TensorReplyFrame<typeof TrainFrameType.ACTIVATIONS>>(f, TrainFrameType.ACTIVATIONS, step, micro)
      if (!allFinite(r.x.data)) {
        throw bad('activations')
      }
      out.outs.push(r.x)
    }
  }
  for (let micro = 0; micro < inputs.dys.length; micro++) {
    const r = await client.request<TensorReplyFrame<typeof TrainFrameType.GRADIENT>>({ type: TrainFrameType.BACKWARD, job, step, micro, x: inputs.dys[micro] }, TrainFrameType.GRADIENT, step, micro)
    if (!allFinite(r.x.data)) {
      throw bad('a gradient')
    }
    out.grads.push(r.x)
  }
  const r = await client.request<ScalarFrame<typeof TrainFrameType.SQUARES>>({ type: TrainFrameType.SUM_SQUARES, job, step, value: inputs.from }, TrainFrameType.SQUARES, step)
  if (!Number.isFinite(r.value)) {
    throw bad('a sum of squares')
  }
  out.own = r.value - inputs.from
  await client.request({ type: TrainFrameType.CLOSE, job }, TrainFrameType.CLOSED)
  return out
}
