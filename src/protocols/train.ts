/**
 * Wire codec of the training protocol /bly/train/1.0.0 (normative text:
 * protocols/train.md). One stream per (job, stage), opened by the job's
 * driver; strictly request then answer, one at a time. Every frame is an
 * unsigned-varint length prefix, then the body: the type byte, then the
 * frame's fields in the order listed below, little-endian (u16, u32, f64;
 * a text is a u16 byte length then UTF-8; an f32 tensor is rows u32, cols
 * u32, then rows x cols little-endian f32). One encoding per frame: a body
 * with bytes left over, a short body or an unknown type does not decode.
 */
import { TrainProtocolError, TrainProtocolErrorCode } from './train-errors.ts'

export const TRAIN_PROTOCOL = '/bly/train/1.0.0'

export const TrainFrameType = {
  OPEN_JOB: 1,
  OPENED: 2,
  FORWARD: 3,
  ACTIVATIONS: 4,
  LOSS: 5,
  BACKWARD: 6,
  GRADIENT: 7,
  SUM_SQUARES: 8,
  SQUARES: 9,
  STEP: 10,
  STEPPED: 11,
  FETCH_PARAMS: 12,
  PARAMS: 13,
  CLOSE: 14,
  CLOSED: 15,
  ERROR: 16,
  /** FORWARD's layout; forward only (eval loss): nothing is held, no gradient, any time */
  EVAL: 17,
  /** the job's trainable state (the driver's checkpoint): answered STATE */
  FETCH_STATE: 18,
  /** the job's trainable state after `step` applied steps: every tensor's values and AdamW moments */
  STATE: 19,
  /** STATE's layout: the job takes that state (recovery, audits): answered LOADED */
  LOAD_STATE: 20,
  /** the state is loaded: the job is at the start of step `step` + 1 */
  LOADED: 21
} as const

/** Codes of ERROR frames. */
export const TrainWireError = {
  /** the frame did not decode: the stream is ended after this ERROR */
  BAD_FRAME: 1,
  /** well-formed but not servable (layers outside the model, a step out of order, a wrong shape) */
  BAD_REQUEST: 2,
  /** the stage is at its job or memory bound: try another holder */
  BUSY: 3,
  /** the activations or gradient sent hold NaN or an infinity: refused, nothing applied */
  NON_FINITE: 4,
  /** no such job on this stream */
  UNKNOWN_JOB: 5,
  /** the stage does not serve this model (or version) */
  WRONG_MODEL: 6,
  INTERNAL: 7
} as const

/** The projections in the order of OPEN_JOB's `targets` bits (bit i: PROJECTION_BITS[i]). */
export const PROJECTION_BITS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const

/** Bits of OPEN_JOB.flags. */
export const OpenJobFlags = {
  /** train the full weights (else LoRA adapters) */
  FULL: 1,
  /** the stage also holds the final norm, the head and the loss */
  HEAD: 2
} as const

export const MAX_TEXT_BYTES = 1024

export interface F32Tensor {
  rows: number
  cols: number
  data: Float32Array
}

export interface OpenJobFrame {
  type: typeof TrainFrameType.OPEN_JOB
  job: string
  model: string
  /** weights version id (hex); empty: the stage's live version */
  version: string
  start: number
  end: number
  flags: number
  rank: number
  alpha: number
  /** bit i set: PROJECTION_BITS[i] gets an adapter */
  targets: number
  seed: number
  /** micro-batches per step (gradients are scaled 1 / batch) */
  batch: number
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** global-norm clip threshold (+Infinity: none) */
  clip: number
  warmup: number
}

export interface JobFrame<T> {
  type: T
  job: string
}

export interface ForwardFrame {
  type: typeof TrainFrameType.FORWARD | typeof TrainFrameType.EVAL
  job: string
  step: number
  micro: number
  /** the micro-batch's token ids (the head stage's targets) */
  ids: Uint32Array
  x: F32Tensor
}

export interface TensorReplyFrame<T> {
  type: T
  job: string
  step: number
  micro: number
  x: F32Tensor
}

export interface LossFrame {
  type: typeof TrainFrameType.LOSS
  job: string
  step: number
  micro: number
  loss: number
}

export interface ScalarFrame<T> {
  type: T
  job: string
  step: number
  /** SUM_SQUARES: the running total of the stages before; SQUARES: that plus this stage's; STEP: the global total; STEPPED: the clip factor applied */
  value: number
}

export interface ParamsFrame {
  type: typeof TrainFrameType.PARAMS
  job: string
  /** the trained tensors by checkpoint name, stored layout */
  tensors: Array<{ name: string, data: Float32Array }>
}

/** One trainable tensor's state: its values and both AdamW moments (equal lengths). */
export interface TensorState {
  name: string
  values: Float32Array
  m: Float32Array
  v: Float32Array
}

/** STATE / LOAD_STATE: a job's trainable state after `step` applied optimizer steps (the AdamW step count). */
export interface StateFrame<T> {
  type: T
  job: string
  step: number
  /** every trainable tensor of the stage, in the stage's order */
  tensors: TensorState[]
}

export interface ErrorFrame {
  type: typeof TrainFrameType.ERROR
  code: number
  job: string
  message: string
}

export type TrainFrame =
  | OpenJobFrame
  | JobFrame<typeof TrainFrameType.OPENED>
  | ForwardFrame
  | TensorReplyFrame<typeof TrainFrameType.ACTIVATIONS>
  | LossFrame
  | TensorReplyFrame<typeof TrainFrameType.BACKWARD>
  | TensorReplyFrame<typeof TrainFrameType.GRADIENT>
  | ScalarFrame<typeof TrainFrameType.SUM_SQUARES>
  | ScalarFrame<typeof TrainFrameType.SQUARES>
  | ScalarFrame<typeof TrainFrameType.STEP>
  | ScalarFrame<typeof TrainFrameType.STEPPED>
  | JobFrame<typeof TrainFrameType.FETCH_PARAMS>
  | ParamsFrame
  | JobFrame<typeof TrainFrameType.CLOSE>
  | JobFrame<typeof TrainFrameType.CLOSED>
  | ErrorFrame
  | JobFrame<typeof TrainFrameType.FETCH_STATE>
  | StateFrame<typeof TrainFrameType.STATE>
  | StateFrame<typeof TrainFrameType.LOAD_STATE>
  | { type: typeof TrainFrameType.LOADED, job: string, step: number }

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

function badFrame (message: string, cause?: unknown): TrainProtocolError {
  return new TrainProtocolError(TrainProtocolErrorCode.BAD_FRAME, message, cause != null ? { cause } : {})
}

/** Appends fields to a growing body. */
class Writer {
  private parts: Uint8Array[] = []
  private size = 0

  private push (b: Uint8Array): void {
    this.parts.push(b)
    this.size += b.length
  }

  u8 (n: number): this {
    this.push(Uint8Array.of(n))
    return this
  }

  u16 (n: number): this {
    const b = new Uint8Array(2)
    new DataView(b.buffer).setUint16(0, n, true)
    this.push(b)
    return this
  }

  u32 (n: number): this {
    if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
      throw badFrame(`${n} is not a u32`)
    }
    const b = new Uint8Array(4)
    new DataView(b.buffer).setUint32(0, n, true)
    this.push(b)
    return this
  }

  f64 (n: number): this {
    const b = new Uint8Array(8)
    new DataView(b.buffer).setFloat64(0, n, true)
    this.push(b)
    return this
  }

  text (s: string): this {
    const b = utf8Encoder.encode(s)
    if (b.length > MAX_TEXT_BYTES) {
      throw badFrame(`a text of ${b.length} bytes exceeds ${MAX_TEXT_BYTES}`)
    }
    this.u16(b.length)
    this.push(b)
    return this
  }

  f32s (a: Float32Array): this {
    if (!HOST_LITTLE_ENDIAN) {
      throw badFrame('big-endian hosts are not supported')
    }
    this.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    return this
  }

  u32s (a: Uint32Array): this {
    this.u32(a.length)
    if (!HOST_LITTLE_ENDIAN) {
      throw badFrame('big-endian hosts are not supported')
    }
    this.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    return this
  }

  tensor (t: F32Tensor): this {
    if (t.rows * t.cols !== t.data.length) {
      throw badFrame(`${t.data.length} values do not make a [${t.rows}, ${t.cols}] tensor`)
    }
    return this.u32(t.rows).u32(t.cols).f32s(t.data)
  }

  /** The body, after `prefix` (written first, in the same buffer: a frame's tensors are copied once). */
  bytes (prefix?: (bodyLength: number) => Uint8Array): Uint8Array {
    const head = prefix?.(this.size) ?? new Uint8Array(0)
    const out = new Uint8Array(head.length + this.size)
    out.set(head, 0)
    let o = head.length
    for (const p of this.parts) {
      out.set(p, o)
      o += p.length
    }
    return out
  }
}

/** Reads fields off a body; every read past its end is BAD_FRAME. */
class Reader {
  private readonly body: Uint8Array
  private readonly view: DataView
  private at: number

  constructor (body: Uint8Array) {
    this.body = body
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength)
    this.at = 0
  }

  private need (n: number, what: string): number {
    if (this.at + n > this.body.length) {
      throw badFrame(`the frame ends inside ${what}`)
    }
    const at = this.at
    this.at += n
    return at
  }

  u8 (what: string): number {
    return this.body[this.need(1, what)]
  }

  u16 (what: string): number {
    return this.view.getUint16(this.need(2, what), true)
  }

  u32 (what: string): number {
    return this.view.getUint32(this.need(4, what), true)
  }

  f64 (what: string): number {
    return this.view.getFloat64(this.need(8, what), true)
  }

  text (what: string): string {
    const n = this.u16(what)
    if (n > MAX_TEXT_BYTES) {
      throw badFrame(`${what} of ${n} bytes exceeds ${MAX_TEXT_BYTES}`)
    }
    const at = this.need(n, what)
    try {
      return utf8Decoder.decode(this.body.subarray(at, at + n))
    } catch (err) {
      throw badFrame(`${what} is not UTF-8`, err)
    }
  }

  /** `count` little-endian f32 values, copied (aligned). */
  f32s (count: number, what: string): Float32Array {
    const at = this.need(count * 4, what)
    const out = new Float32Array(count)
    new Uint8Array(out.buffer).set(this.body.subarray(at, at + count * 4))
    return out
  }

  u32s (what: string): Uint32Array {
    const n = this.u32(what)
    const at = this.need(n * 4, what)
    const out = new Uint32Array(n)
    new Uint8Array(out.buffer).set(this.body.subarray(at, at + n * 4))
    return out
  }

  tensor (what: string): F32Tensor {
    const rows = this.u32(what)
    const cols = this.u32(what)
    const n = rows * cols
    if (n * 4 > this.body.length - this.at) {
      throw badFrame(`${what} [${rows}, ${cols}] is longer than the frame`)
    }
    return { rows, cols, data: this.f32s(n, what) }
  }

  end (what: string): void {
    if (this.at !== this.body.length) {
      throw badFrame(`${what} frame has ${this.body.length - this.at} bytes left over`)
    }
  }
}

/** Unsigned LEB128 varint of `n`. */
function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/** The body of a frame (no length prefix). */
export function encodeTrainBody (frame: TrainFrame): Uint8Array {
  return frameWriter(frame).bytes()
}

/** A frame's fields in a Writer (the body's parts, not yet joined). */
// eslint-disable-next-line complexity
function frameWriter (frame: TrainFrame): Writer {
  const w = new Writer().u8(frame.type)
  switch (frame.type) {
    case TrainFrameType.OPEN_JOB:
      w.text(frame.job).text(frame.model).text(frame.version).u32(frame.start).u32(frame.end).u8(frame.flags).u16(frame.rank).f64(frame.alpha).u8(frame.targets)
        .u32(frame.seed).u32(frame.batch).f64(frame.lr).f64(frame.beta1).f64(frame.beta2).f64(frame.eps).f64(frame.weightDecay).f64(frame.clip).u32(frame.warmup)
      break
    case TrainFrameType.FORWARD:
    case TrainFrameType.EVAL:
      w.text(frame.job).u32(frame.step).u32(frame.micro).u32s(frame.ids).tensor(frame.x)
      break
    case TrainFrameType.ACTIVATIONS:
    case TrainFrameType.BACKWARD:
    case TrainFrameType.GRADIENT:
      w.text(frame.job).u32(frame.step).u32(frame.micro).tensor(frame.x)
      break
    case TrainFrameType.LOSS:
      w.text(frame.job).u32(frame.step).u32(frame.micro).f64(frame.loss)
      break
    case TrainFrameType.SUM_SQUARES:
    case TrainFrameType.SQUARES:
    case TrainFrameType.STEP:
    case TrainFrameType.STEPPED:
      w.text(frame.job).u32(frame.step).f64(frame.value)
      break
    case TrainFrameType.PARAMS:
      w.text(frame.job).u32(frame.tensors.length)
      for (const t of frame.tensors) {
        w.text(t.name).u32(t.data.length).f32s(t.data)
      }
      break
    case TrainFrameType.ERROR:
      w.u8(frame.code).text(frame.job).text(frame.message)
      break
    case TrainFrameType.STATE:
    case TrainFrameType.LOAD_STATE:
      w.text(frame.job).u32(frame.step).u32(frame.tensors.length)
      for (const t of frame.tensors) {
        if (t.m.length !== t.values.length || t.v.length !== t.values.length) {
          throw badFrame(`tensor ${t.name}: moments of ${t.m.length} and ${t.v.length} values for ${t.values.length}`)
        }
        w.text(t.name).u32(t.values.length).f32s(t.values).f32s(t.m).f32s(t.v)
      }
      break
    case TrainFrameType.LOADED:
      w.text(frame.job).u32(frame.step)
      break
    default:
      w.text(frame.job)
  }
  return w
}

/** The frame with its length prefix, in one buffer (FrameStream's shape: head only). */
export function encodeTrainFrame (frame: TrainFrame): { head: Uint8Array, byteLength: number } {
  const head = frameWriter(frame).bytes(encodeVarint)
  return { head, byteLength: head.length }
}

/** One frame body (without its length prefix) to a frame; throws TrainProtocolError BAD_FRAME on anything malformed. */
// eslint-disable-next-line complexity
export function decodeTrainFrame (body: Uint8Array): TrainFrame {
  const r = new Reader(body)
  const type = r.u8('the type')
  let frame: TrainFrame
  switch (type) {
    case TrainFrameType.OPEN_JOB: {
      frame = {
        type,
        job: r.text('the job id'),
        model: r.text('the model'),
        version: r.text('the version'),
        start: r.u32('start'),
        end: r.u32('end'),
        flags: r.u8('flags'),
        rank: r.u16('rank'),
        alpha: r.f64('alpha'),
        targets: r.u8('targets'),
        seed: r.u32('seed'),
        batch: r.u32('batch'),
        lr: r.f64('lr'),
        beta1: r.f64('beta1'),
        beta2: r.f64('beta2'),
        eps: r.f64('eps'),
        weightDecay: r.f64('weight decay'),
        clip: r.f64('clip'),
        warmup: r.u32('warmup')
      }
      if ((frame.flags & ~(OpenJobFlags.FULL | OpenJobFlags.HEAD)) !== 0 || frame.targets >= 1 << PROJECTION_BITS.length) {
        throw badFrame('OPEN_JOB has unknown flag or target bits')
      }
      break
    }
    case TrainFrameType.FORWARD:
    case TrainFrameType.EVAL:
      frame = { type, job: r.text('the job id'), step: r.u32('step'), micro: r.u32('micro'), ids: r.u32s('the ids'), x: r.tensor('the activations') }
      break
    case TrainFrameType.ACTIVATIONS:
    case TrainFrameType.BACKWARD:
    case TrainFrameType.GRADIENT:
      frame = { type, job: r.text('the job id'), step: r.u32('step'), micro: r.u32('micro'), x: r.tensor('the tensor') }
      break
    case TrainFrameType.LOSS:
      frame = { type, job: r.text('the job id'), step: r.u32('step'), micro: r.u32('micro'), loss: r.f64('the loss') }
      break
    case TrainFrameType.SUM_SQUARES:
    case TrainFrameType.SQUARES:
    case TrainFrameType.STEP:
    case TrainFrameType.STEPPED:
      frame = { type, job: r.text('the job id'), step: r.u32('step'), value: r.f64('the value') }
      break
    case TrainFrameType.PARAMS: {
      const job = r.text('the job id')
      const n = r.u32('the tensor count')
      const tensors: ParamsFrame['tensors'] = []
      for (let i = 0; i < n; i++) {
        const name = r.text('a tensor name')
        const len = r.u32('a tensor length')
        if (len * 4 > body.length) {
          throw badFrame(`tensor ${name} of ${len} values is longer than the frame`)
        }
        tensors.push({ name, data: r.f32s(len, name) })
      }
      frame = { type, job, tensors }
      break
    }
    case TrainFrameType.ERROR:
      frame = { type, code: r.u8('the code'), job: r.text('the job id'), message: r.text('the message') }
      break
    case TrainFrameType.STATE:
    case TrainFrameType.LOAD_STATE: {
      const job = r.text('the job id')
      const step = r.u32('step')
      const n = r.u32('the tensor count')
      const tensors: TensorState[] = []
      for (let i = 0; i < n; i++) {
        const name = r.text('a tensor name')
        const len = r.u32('a tensor length')
        if (len * 12 > body.length) {
          throw badFrame(`tensor ${name} of 3 x ${len} values is longer than the frame`)
        }
        tensors.push({ name, values: r.f32s(len, name), m: r.f32s(len, `${name} (m)`), v: r.f32s(len, `${name} (v)`) })
      }
      frame = { type, job, step, tensors }
      break
    }
    case TrainFrameType.LOADED:
      frame = { type, job: r.text('the job id'), step: r.u32('step') }
      break
    case TrainFrameType.FETCH_STATE:
    case TrainFrameType.OPENED:
    case TrainFrameType.FETCH_PARAMS:
    case TrainFrameType.CLOSE:
    case TrainFrameType.CLOSED:
      frame = { type, job: r.text('the job id') }
      break
    default:
      throw badFrame(`unknown frame type ${type}`)
  }
  r.end(`type ${type}`)
  return frame
}
