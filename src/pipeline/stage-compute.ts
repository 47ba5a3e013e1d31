/**
 * Running a session's steps through the stage's layers: TRUNCATE rewinds
 * the session's KV cache; FORWARD checks the step (dtype, hidden size,
 * positions within the cache and the session's length) and its hidden
 * states (NaN or ±Inf get NON_FINITE_INPUT before the cache, a rewind
 * included, or any tensor op sees them), runs the layers, and the final
 * norm + head for a session opened with LOGITS. A refused step throws a
 * PipelineError carrying the wire code the client should hear (stepError).
 */
import { InferErrorCode, OpenFlags, ResultKind, TensorDtype, tensorF32 } from '../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { firstNonFinite } from './finite.ts'
import { logitsData } from './stage-layers.ts'
import type { StageFaultInjector } from './fault-injection.ts'
import type { StageLayers } from './stage-layers.ts'
import type { StageSession } from './stage-session.ts'
import type { ForwardFrame, TruncateFrame } from '../protocols/infer.ts'

export interface StageComputeComponents {
  layers: StageLayers
  /** FAULT INJECTION FOR TESTS ONLY: slows every step (counted as compute) and may corrupt its RESULT */
  faults?: Pick<StageFaultInjector, 'slow' | 'corrupt'>
}

/** Compute counters (part of StageStats). */
export interface ComputeCounters {
  /** FORWARD steps computed, positions in them, and the milliseconds spent computing */
  steps: number
  positions: number
  computeMs: number
  /** of those, the one-position steps (decode) and their milliseconds */
  decodeSteps: number
  decodeMs: number
  /** FORWARDs refused for NaN or ±Inf in their hidden states */
  nonFinite: number
}

/** The output of one FORWARD: [rows, cols] of hidden states or logits. */
export interface StepOutput {
  kind: ResultKind
  rows: number
  cols: number
  data: Float32Array
}

/** A step refused for a reason the client should hear (carries the wire code). */
export function stepError (code: InferErrorCode, message: string): PipelineError {
  return new PipelineError(PipelineErrorCode.REMOTE, message, { remoteCode: code })
}

export class StageCompute {
  readonly counters: ComputeCounters
  private readonly components: StageComputeComponents

  constructor (components: StageComputeComponents) {
    this.components = components
    this.counters = { steps: 0, positions: 0, computeMs: 0, decodeSteps: 0, decodeMs: 0, nonFinite: 0 }
  }

  /** Rewinds the session's cache to `job.length` positions (nothing when its cache is gone). */
  truncate (s: StageSession, job: TruncateFrame): void {
    const kv = s.kv
    if (kv == null) {
      return
    }
    if (job.length > kv.length) {
      throw stepError(InferErrorCode.BAD_REQUEST, `cannot truncate ${kv.length} cached positions to ${job.length}`)
    }
    kv.truncate(job.length)
  }

  /** Runs `job` through the session's layers; undefined when its cache is gone. */
  async forward (s: StageSession, job: ForwardFrame): Promise<StepOutput | undefined> {
    const kv = s.kv
    if (kv == null) {
      return undefined
    }
    const { layers } = this.components
    const { tensor, startPos } = job
    const { hiddenSize, vocabSize } = layers.config
    if (tensor.dtype !== TensorDtype.F32) {
      throw stepError(InferErrorCode.UNSUPPORTED_DTYPE, `dtype ${tensor.dtype} is not served (f32 only)`)
    }
    if (tensor.cols !== hiddenSize) {
      throw stepError(InferErrorCode.BAD_REQUEST, `hidden size ${tensor.cols} is not the model's ${hiddenSize}`)
    }
    if (startPos > kv.length) {
      throw stepError(InferErrorCode.BAD_REQUEST, `startPos ${startPos} is past the ${kv.length} cached positions`)
    }
    if (startPos + tensor.rows > s.maxLength) {
      throw stepError(InferErrorCode.TOO_LONG, `positions up to ${startPos + tensor.rows} exceed the session's ${s.maxLength}`)
    }
    // before the cache (a rewind included) or any tensor op sees them: NaN / Inf would poison the cache for good
    const x = tensorF32(tensor)
    const bad = firstNonFinite(x)
    if (bad >= 0) {
      this.counters.nonFinite++
      throw stepError(InferErrorCode.NON_FINITE_INPUT, `hidden state ${x[bad]} at row ${startPos + Math.floor(bad / hiddenSize)}, column ${bad % hiddenSize}: a step's input must be finite`)
    }
    const t0 = performance.now()
    let out = await layers.forwardData(kv, x, startPos)
    let rows = tensor.rows
    let cols = hiddenSize
    let kind: ResultKind = ResultKind.HIDDEN
    if ((s.flags & OpenFlags.LOGITS) !== 0) {
      const from = (s.flags & OpenFlags.ALL_ROWS) !== 0 ? 0 : rows - 1
      out = await logitsData(layers, out, rows, hiddenSize, from)
      rows -= from
      cols = vocabSize
      kind = ResultKind.LOGITS
    }
    const faults = this.components.faults
    if (faults != null) {
      await faults.slow(performance.now() - t0)
    }
    const ms = performance.now() - t0
    const c = this.counters
    c.computeMs += ms
    if (tensor.rows === 1) {
      c.decodeSteps++
      c.decodeMs += ms
    }
    c.steps++
    c.positions += tensor.rows
    if (faults != null) {
      out = faults.corrupt(out, c.steps)
    }
    return { kind, rows, cols, data: out }
  }
}
