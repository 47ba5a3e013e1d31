/**
 * Wire codec of the stage protocol /bly/infer/1.0.0 (described in
 * protocols/infer.md). One long-lived stream per (client session, stage);
 * every frame is an unsigned-varint length prefix followed by a small
 * fixed little-endian header and, for FORWARD / RESULT, the raw tensor
 * bytes appended as they are (no JSON, no copy on the send side).
 */
import { PipelineError, PipelineErrorCode } from './pipeline-errors.ts'
import { RECEIPT_BODY_BYTES } from './receipt.ts'

export const INFER_PROTOCOL = '/bly/infer/1.0.0'

/** Version carried in OPEN; a stage refuses versions it does not speak. */
export const INFER_WIRE_VERSION = 1

/** Frame type byte (first byte of every frame body). */
export const InferFrameType = {
  OPEN: 1,
  OPEN_OK: 2,
  BUSY: 3,
  ERROR: 4,
  FORWARD: 5,
  RESULT: 6,
  TRUNCATE: 7,
  CLOSE: 8,
  /** the client's signed receipt of the session's work on this stage, before CLOSE (protocols/ledger.md) */
  RECEIPT: 9
} as const

/** Element type of a tensor payload. Only F32 is computed today; F16 has its code reserved. */
export const TensorDtype = {
  F32: 1,
  F16: 2
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type TensorDtype = typeof TensorDtype[keyof typeof TensorDtype]

/** What a RESULT carries. */
export const ResultKind = {
  /** hidden states after the stage's last layer, [T, hidden] */
  HIDDEN: 0,
  /** next-token logits (the stage holds the final norm + head), [rows, vocab] */
  LOGITS: 1
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ResultKind = typeof ResultKind[keyof typeof ResultKind]

/** Bits of OPEN.flags. */
export const OpenFlags = {
  /** the stage holding the head returns logits instead of hidden states */
  LOGITS: 1,
  /** with LOGITS: logits of every row of a FORWARD, not only the last */
  ALL_ROWS: 2,
  /**
   * the OPEN pins a weights version: its 32 bytes follow the model id, and a
   * stage that does not serve that version refuses with WRONG_VERSION
   * (protocols/versions.md; set by the client, never given as an option)
   */
  VERSION: 4
} as const

/** Bytes of a weights version id in OPEN (sha256). */
export const WEIGHTS_VERSION_BYTES = 32

/** Codes of ERROR frames. */
export const InferErrorCode = {
  /** the frame did not decode: the stream is aborted after this ERROR */
  BAD_FRAME: 1,
  /** a well-formed request that cannot be served (bad startPos, hidden size, ...); the session stays */
  BAD_REQUEST: 2,
  /** OPEN names a model this stage does not serve */
  WRONG_MODEL: 3,
  /** OPEN names layers this stage does not hold */
  WRONG_RANGE: 4,
  /** positions past the session's granted maxLength */
  TOO_LONG: 5,
  UNSUPPORTED_DTYPE: 6,
  /** the session sat idle past the stage's timeout; its cache is gone */
  EXPIRED: 7,
  INTERNAL: 8,
  SHUTTING_DOWN: 9,
  /** a FORWARD / TRUNCATE / CLOSE before OPEN_OK, or for another session id */
  NOT_OPEN: 10,
  /**
   * more steps queued on the session than the stage allows, or a frame that
   * would take the bytes the stage holds for partially received frames past
   * its bound: the stream is aborted after this ERROR
   */
  OVERLOADED: 11,
  UNSUPPORTED_VERSION: 12,
  /**
   * a FORWARD whose hidden states hold NaN or ±Inf: refused before the
   * session's KV cache or any tensor op sees them (nothing is computed, the
   * cache is as it was); the session stays
   */
  NON_FINITE_INPUT: 13,
  /**
   * OPEN pins a weights version this stage does not serve (it serves
   * another version of the model, e.g. it moved to a newer one): the
   * client routes to a holder of that version
   */
  WRONG_VERSION: 14
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type InferErrorCode = typeof InferErrorCode[keyof typeof InferErrorCode]

/** A 2-D tensor as raw little-endian bytes ([rows, cols] row-major). */
export interface WireTensor {
  dtype: TensorDtype
  rows: number
  cols: number
  data: Uint8Array
}

export interface OpenFrame {
  type: 'open'
  version: number
  /** client-chosen id of the generation session (the same on every stage) */
  sessionId: number
  modelId: string
  /** layers [start, end) the client wants this stage to run */
  start: number
  end: number
  /** most positions the session will cache; 0 = the stage's default */
  maxLength: number
  /** 0-255, higher is served first when steps of several sessions wait */
  priority: number
  /** OpenFlags; VERSION is set by the encoder exactly when weightsVersion is given */
  flags: number
  /** the weights version the session is pinned to (64 lowercase hex characters); absent: whatever the stage serves */
  weightsVersion?: string
}

export interface OpenOkFrame {
  type: 'open-ok'
  sessionId: number
  /** positions granted */
  maxLength: number
  hiddenSize: number
}

export interface BusyFrame {
  type: 'busy'
  sessionId: number
  /** a hint: when room may free up (0 = unknown) */
  retryAfterMs: number
  message: string
}

export interface ErrorFrame {
  type: 'error'
  code: InferErrorCode
  /** step the error concerns; 0 when it concerns the whole stream */
  seq: number
  message: string
}

export interface ForwardFrame {
  type: 'forward'
  sessionId: number
  /** client step number (>= 1), echoed in RESULT / ERROR */
  seq: number
  /** position of the first row; < the cached length rewinds the cache first */
  startPos: number
  tensor: WireTensor
}

export interface ResultFrame {
  type: 'result'
  sessionId: number
  seq: number
  startPos: number
  kind: ResultKind
  tensor: WireTensor
}

export interface TruncateFrame {
  type: 'truncate'
  sessionId: number
  seq: number
  /** positions to keep */
  length: number
}

export interface CloseFrame {
  type: 'close'
  sessionId: number
}

/**
 * The client's receipt of what this stage ran in the session (the receipt
 * body of protocols/ledger.md and the client's signature of it); the stage
 * checks it against its own count, co-signs and publishes it. No answer.
 */
export interface ReceiptFrame {
  type: 'receipt'
  sessionId: number
  /** RECEIPT_BODY_BYTES */
  body: Uint8Array
  /** 64 bytes */
  clientSig: Uint8Array
}

export type InferFrame = OpenFrame | OpenOkFrame | BusyFrame | ErrorFrame | ForwardFrame | ResultFrame | TruncateFrame | CloseFrame | ReceiptFrame

/** Longest model id (UTF-8 bytes) and error / busy message carried. */
export const MAX_MODEL_ID_BYTES = 256
export const MAX_MESSAGE_BYTES = 1024

/** Fixed header sizes (bytes, without the length prefix). */
export const TENSOR_HEADER_BYTES = 24
const OPEN_HEADER_BYTES = 22
const OPEN_OK_BYTES = 16
const BUSY_HEADER_BYTES = 14
const ERROR_HEADER_BYTES = 10
const TRUNCATE_BYTES = 16
const CLOSE_BYTES = 8
const RECEIPT_FRAME_BYTES = 8 + RECEIPT_BODY_BYTES + 64

const U32_MAX = 0xffffffff
const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const ERROR_CODES = new Set<number>(Object.values(InferErrorCode))

function badFrame (message: string, cause?: unknown): PipelineError {
  return new PipelineError(PipelineErrorCode.BAD_FRAME, `bad infer frame: ${message}`, cause != null ? { cause } : {})
}

/** Bytes per element of a dtype. */
export function dtypeBytes (dtype: number): number {
  switch (dtype) {
    case TensorDtype.F32: return 4
    case TensorDtype.F16: return 2
    default: throw badFrame(`unknown dtype ${dtype}`)
  }
}

function checkU32 (name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `${name} must be a u32, got ${v}`)
  }
}

function checkU8 (name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 255) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `${name} must be 0-255, got ${v}`)
  }
}

/** UTF-8 bytes of `s`, cut to at most `max` bytes on a character boundary. */
function clippedUtf8 (s: string, max: number): Uint8Array {
  const b = utf8Encoder.encode(s)
  if (b.length <= max) {
    return b
  }
  let end = max
  while (end > 0 && (b[end] & 0xc0) === 0x80) {
    end--
  }
  return b.subarray(0, end)
}

/** Unsigned LEB128 varint of `n` (the length prefix it-length-prefixed / LengthPrefixedDecoder read). */
export function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/** Wraps raw little-endian f32 values without copying. */
export function f32Tensor (data: Float32Array, rows: number, cols: number): WireTensor {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 1 || cols < 1 || rows * cols !== data.length) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `${data.length} values do not make a [${rows}, ${cols}] tensor`)
  }
  if (!HOST_LITTLE_ENDIAN) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'big-endian hosts are not supported')
  }
  return { dtype: TensorDtype.F32, rows, cols, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }
}

/** The f32 values of a tensor: a view when the bytes are aligned, else one copy. */
export function tensorF32 (t: WireTensor): Float32Array {
  if (t.dtype !== TensorDtype.F32) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `tensor dtype ${t.dtype} is not f32`)
  }
  const n = t.rows * t.cols
  if (t.data.byteOffset % 4 === 0) {
    return new Float32Array(t.data.buffer, t.data.byteOffset, n)
  }
  const copy = new Float32Array(n)
  new Uint8Array(copy.buffer).set(t.data.subarray(0, n * 4))
  return copy
}

/** A frame ready to send: the length prefix + header, then the payload (kept as the caller's bytes). */
export interface EncodedFrame {
  head: Uint8Array
  payload?: Uint8Array
  /** total bytes on the wire */
  byteLength: number
}

function header (size: number, type: number): { buf: Uint8Array, view: DataView } {
  const buf = new Uint8Array(size)
  buf[0] = type
  return { buf, view: new DataView(buf.buffer) }
}

/** OPEN's body: the fixed header, the model id, and the weights version when pinned (flag VERSION set exactly then). */
function encodeOpen (frame: OpenFrame): Uint8Array {
  checkU8('version', frame.version)
  checkU8('priority', frame.priority)
  checkU8('flags', frame.flags)
  for (const k of ['sessionId', 'start', 'end', 'maxLength'] as const) {
    checkU32(k, frame[k])
  }
  const id = utf8Encoder.encode(frame.modelId)
  if (id.length > MAX_MODEL_ID_BYTES) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `model id longer than ${MAX_MODEL_ID_BYTES} bytes`)
  }
  const pinned = frame.weightsVersion
  if (pinned != null && !/^[0-9a-f]{64}$/.test(pinned)) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `weightsVersion must be 64 lowercase hex characters, got ${JSON.stringify(pinned)}`)
  }
  const { buf, view } = header(OPEN_HEADER_BYTES + id.length + (pinned != null ? WEIGHTS_VERSION_BYTES : 0), InferFrameType.OPEN)
  buf[1] = frame.version
  buf[2] = frame.priority
  buf[3] = pinned != null ? frame.flags | OpenFlags.VERSION : frame.flags & ~OpenFlags.VERSION
  view.setUint32(4, frame.sessionId, true)
  view.setUint32(8, frame.start, true)
  view.setUint32(12, frame.end, true)
  view.setUint32(16, frame.maxLength, true)
  view.setUint16(20, id.length, true)
  buf.set(id, OPEN_HEADER_BYTES)
  if (pinned != null) {
    buf.set(Buffer.from(pinned, 'hex'), OPEN_HEADER_BYTES + id.length)
  }
  return buf
}

function encodeBody (frame: InferFrame): { body: Uint8Array, payload?: Uint8Array } {
  switch (frame.type) {
    case 'open':
      return { body: encodeOpen(frame) }
    case 'open-ok': {
      const { buf, view } = header(OPEN_OK_BYTES, InferFrameType.OPEN_OK)
      view.setUint32(4, frame.sessionId, true)
      view.setUint32(8, frame.maxLength, true)
      view.setUint32(12, frame.hiddenSize, true)
      return { body: buf }
    }
    case 'busy': {
      const msg = clippedUtf8(frame.message, MAX_MESSAGE_BYTES)
      const { buf, view } = header(BUSY_HEADER_BYTES + msg.length, InferFrameType.BUSY)
      view.setUint32(4, frame.sessionId, true)
      view.setUint32(8, frame.retryAfterMs, true)
      view.setUint16(12, msg.length, true)
      buf.set(msg, BUSY_HEADER_BYTES)
      return { body: buf }
    }
    case 'error': {
      const msg = clippedUtf8(frame.message, MAX_MESSAGE_BYTES)
      const { buf, view } = header(ERROR_HEADER_BYTES + msg.length, InferFrameType.ERROR)
      view.setUint16(2, frame.code, true)
      view.setUint32(4, frame.seq, true)
      view.setUint16(8, msg.length, true)
      buf.set(msg, ERROR_HEADER_BYTES)
      return { body: buf }
    }
    case 'forward':
    case 'result': {
      const t = frame.tensor
      const need = t.rows * t.cols * dtypeBytes(t.dtype)
      if (t.rows < 1 || t.cols < 1 || t.data.byteLength !== need) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `tensor [${t.rows}, ${t.cols}] needs ${need} bytes, has ${t.data.byteLength}`)
      }
      for (const k of ['sessionId', 'seq', 'startPos'] as const) {
        checkU32(k, frame[k])
      }
      const { buf, view } = header(TENSOR_HEADER_BYTES, frame.type === 'forward' ? InferFrameType.FORWARD : InferFrameType.RESULT)
      buf[1] = t.dtype
      buf[2] = frame.type === 'result' ? frame.kind : 0
      view.setUint32(4, frame.sessionId, true)
      view.setUint32(8, frame.seq, true)
      view.setUint32(12, frame.startPos, true)
      view.setUint32(16, t.rows, true)
      view.setUint32(20, t.cols, true)
      return { body: buf, payload: t.data }
    }
    case 'truncate': {
      checkU32('length', frame.length)
      const { buf, view } = header(TRUNCATE_BYTES, InferFrameType.TRUNCATE)
      view.setUint32(4, frame.sessionId, true)
      view.setUint32(8, frame.seq, true)
      view.setUint32(12, frame.length, true)
      return { body: buf }
    }
    case 'close': {
      const { buf, view } = header(CLOSE_BYTES, InferFrameType.CLOSE)
      view.setUint32(4, frame.sessionId, true)
      return { body: buf }
    }
    case 'receipt': {
      checkU32('sessionId', frame.sessionId)
      if (frame.body.length !== RECEIPT_BODY_BYTES || frame.clientSig.length !== 64) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `a RECEIPT carries a ${RECEIPT_BODY_BYTES}-byte body and a 64-byte signature`)
      }
      const { buf, view } = header(RECEIPT_FRAME_BYTES, InferFrameType.RECEIPT)
      view.setUint32(4, frame.sessionId, true)
      buf.set(frame.body, 8)
      buf.set(frame.clientSig, 8 + RECEIPT_BODY_BYTES)
      return { body: buf }
    }
    default:
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `unknown frame type ${(frame as { type: string }).type}`)
  }
}

/** Encodes a frame as the length prefix + header and a separate payload (sent as is, not copied). */
export function encodeInferFrame (frame: InferFrame): EncodedFrame {
  const { body, payload } = encodeBody(frame)
  const size = body.length + (payload?.byteLength ?? 0)
  const prefix = encodeVarint(size)
  const head = new Uint8Array(prefix.length + body.length)
  head.set(prefix, 0)
  head.set(body, prefix.length)
  return { head, payload, byteLength: head.length + (payload?.byteLength ?? 0) }
}

/** The whole encoded frame in one buffer (tests, small frames). */
export function encodeInferFrameBytes (frame: InferFrame): Uint8Array {
  const { head, payload, byteLength } = encodeInferFrame(frame)
  if (payload == null) {
    return head
  }
  const out = new Uint8Array(byteLength)
  out.set(head, 0)
  out.set(payload, head.length)
  return out
}

function expectLength (body: Uint8Array, n: number, what: string): void {
  if (body.length !== n) {
    throw badFrame(`${what} frame is ${body.length} bytes, expected ${n}`)
  }
}

function readText (body: Uint8Array, at: number, len: number, max: number, what: string): string {
  if (len > max) {
    throw badFrame(`${what} of ${len} bytes exceeds ${max}`)
  }
  expectLength(body, at + len, what)
  try {
    return utf8Decoder.decode(body.subarray(at, at + len))
  } catch (err) {
    throw badFrame(`${what} is not UTF-8`, err)
  }
}

/** OPEN (its header length checked by the caller); with flag VERSION, exactly 32 bytes of weights version follow the model id. */
function decodeOpen (body: Uint8Array, view: DataView): OpenFrame {
  const start = view.getUint32(8, true)
  const end = view.getUint32(12, true)
  if (end <= start) {
    throw badFrame(`OPEN range [${start}, ${end}) is empty`)
  }
  const flags = body[3]
  const idLength = view.getUint16(20, true)
  const pinned = (flags & OpenFlags.VERSION) !== 0
  const textEnd = OPEN_HEADER_BYTES + idLength
  if (pinned) {
    expectLength(body, textEnd + WEIGHTS_VERSION_BYTES, 'OPEN with a weights version')
  }
  const frame: OpenFrame = {
    type: 'open',
    version: body[1],
    priority: body[2],
    flags,
    sessionId: view.getUint32(4, true),
    start,
    end,
    maxLength: view.getUint32(16, true),
    modelId: readText(pinned ? body.subarray(0, textEnd) : body, OPEN_HEADER_BYTES, idLength, MAX_MODEL_ID_BYTES, 'OPEN model id')
  }
  if (pinned) {
    frame.weightsVersion = Buffer.from(body.subarray(textEnd, textEnd + WEIGHTS_VERSION_BYTES)).toString('hex')
  }
  return frame
}

/**
 * Decodes one frame body (without its length prefix). Tensor bytes stay a
 * view into `body`. Throws ERR_INFER_BAD_FRAME on anything malformed.
 */
export function decodeInferFrame (body: Uint8Array): InferFrame {
  if (body.length < 1) {
    throw badFrame('empty frame')
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const need = (n: number, what: string): void => {
    if (body.length < n) {
      throw badFrame(`${what} frame is ${body.length} bytes, shorter than its ${n}-byte header`)
    }
  }
  switch (body[0]) {
    case InferFrameType.OPEN:
      need(OPEN_HEADER_BYTES, 'OPEN')
      return decodeOpen(body, view)
    case InferFrameType.OPEN_OK:
      expectLength(body, OPEN_OK_BYTES, 'OPEN_OK')
      return { type: 'open-ok', sessionId: view.getUint32(4, true), maxLength: view.getUint32(8, true), hiddenSize: view.getUint32(12, true) }
    case InferFrameType.BUSY:
      need(BUSY_HEADER_BYTES, 'BUSY')
      return {
        type: 'busy',
        sessionId: view.getUint32(4, true),
        retryAfterMs: view.getUint32(8, true),
        message: readText(body, BUSY_HEADER_BYTES, view.getUint16(12, true), MAX_MESSAGE_BYTES, 'BUSY message')
      }
    case InferFrameType.ERROR: {
      need(ERROR_HEADER_BYTES, 'ERROR')
      const code = view.getUint16(2, true)
      if (!ERROR_CODES.has(code)) {
        throw badFrame(`unknown error code ${code}`)
      }
      return {
        type: 'error',
        code: code as InferErrorCode,
        seq: view.getUint32(4, true),
        message: readText(body, ERROR_HEADER_BYTES, view.getUint16(8, true), MAX_MESSAGE_BYTES, 'ERROR message')
      }
    }
    case InferFrameType.FORWARD:
    case InferFrameType.RESULT: {
      const what = body[0] === InferFrameType.FORWARD ? 'FORWARD' : 'RESULT'
      need(TENSOR_HEADER_BYTES, what)
      const dtype = body[1]
      const rows = view.getUint32(16, true)
      const cols = view.getUint32(20, true)
      if (rows < 1 || cols < 1) {
        throw badFrame(`${what} tensor shape [${rows}, ${cols}] is empty`)
      }
      const bytes = rows * cols * dtypeBytes(dtype)
      expectLength(body, TENSOR_HEADER_BYTES + bytes, `${what} [${rows}, ${cols}]`)
      const tensor: WireTensor = { dtype: dtype as TensorDtype, rows, cols, data: body.subarray(TENSOR_HEADER_BYTES) }
      const common = { sessionId: view.getUint32(4, true), seq: view.getUint32(8, true), startPos: view.getUint32(12, true), tensor }
      if (body[0] === InferFrameType.FORWARD) {
        return { type: 'forward', ...common }
      }
      if (body[2] !== ResultKind.HIDDEN && body[2] !== ResultKind.LOGITS) {
        throw badFrame(`unknown RESULT kind ${body[2]}`)
      }
      return { type: 'result', kind: body[2] as ResultKind, ...common }
    }
    case InferFrameType.TRUNCATE:
      expectLength(body, TRUNCATE_BYTES, 'TRUNCATE')
      return { type: 'truncate', sessionId: view.getUint32(4, true), seq: view.getUint32(8, true), length: view.getUint32(12, true) }
    case InferFrameType.CLOSE:
      expectLength(body, CLOSE_BYTES, 'CLOSE')
      return { type: 'close', sessionId: view.getUint32(4, true) }
    case InferFrameType.RECEIPT:
      expectLength(body, RECEIPT_FRAME_BYTES, 'RECEIPT')
      return { type: 'receipt', sessionId: view.getUint32(4, true), body: body.slice(8, 8 + RECEIPT_BODY_BYTES), clientSig: body.slice(8 + RECEIPT_BODY_BYTES) }
    default:
      throw badFrame(`unknown frame type ${body[0]}`)
  }
}
