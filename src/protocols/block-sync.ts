/**
 * Wire codec of the block exchange protocol (schema: protocols/block-sync.proto).
 * One Frame per length-prefixed message; requests and responses share the
 * envelope and are matched by `id`.
 */
import { ID_LENGTH } from './block-header.ts'
import { NetError, NetErrorCode } from './net-errors.ts'
import { PbReader, PbWriter, WireError, WireType } from './pb-wire.ts'

/** Most ids one GetHeaders / GetHave request may carry, and most tips one Tips may carry. */
export const MAX_IDS_PER_MESSAGE = 1024

/** What a peer has of a block's payload (GetHave). */
export const HaveStatus = {
  Unknown: 0,
  Partial: 1,
  Complete: 2
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type HaveStatus = typeof HaveStatus[keyof typeof HaveStatus]

/** Codes of Error frames. */
export const SyncErrorCode = {
  NOT_FOUND: 1,
  BUSY: 2,
  BAD_REQUEST: 3,
  INTERNAL: 4
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type SyncErrorCode = typeof SyncErrorCode[keyof typeof SyncErrorCode]

export type SyncRequest =
  | { type: 'get-tips' }
  | { type: 'get-headers', ids: Uint8Array[] }
  | { type: 'get-have', ids: Uint8Array[] }
  | { type: 'get-chunk', id: Uint8Array, index: number }

export type SyncResponse =
  | { type: 'tips', ids: Uint8Array[] }
  | { type: 'headers', headers: Array<Uint8Array | undefined> }
  | { type: 'have', status: HaveStatus[] }
  | { type: 'chunk', data: Uint8Array }
  | { type: 'error', code: SyncErrorCode, message: string }

export type SyncMessage = SyncRequest | SyncResponse

export interface SyncFrame {
  id: number
  body: SyncMessage
}

const F = {
  id: 1,
  getTips: 2,
  getHeaders: 3,
  getHave: 4,
  getChunk: 5,
  tips: 10,
  headers: 11,
  have: 12,
  chunk: 13,
  error: 15
} as const

const REQUEST_TYPES = new Set<SyncMessage['type']>(['get-tips', 'get-headers', 'get-have', 'get-chunk'])

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

/** True when `body` is a request (as opposed to a response). */
export function isSyncRequest (body: SyncMessage): body is SyncRequest {
  return REQUEST_TYPES.has(body.type)
}

function badMessage (message: string, cause?: unknown): NetError {
  return new NetError(NetErrorCode.BAD_MESSAGE, `bad block-sync frame: ${message}`, cause != null ? { cause } : undefined)
}

function checkIds (ids: Uint8Array[]): void {
  if (ids.length > MAX_IDS_PER_MESSAGE) {
    throw badMessage(`${ids.length} ids, at most ${MAX_IDS_PER_MESSAGE} allowed`)
  }
  for (const id of ids) {
    if (id.length !== ID_LENGTH) {
      throw badMessage(`block id is ${id.length} bytes, expected ${ID_LENGTH}`)
    }
  }
}

function repeatedBytes (field: number, values: Array<Uint8Array | undefined>): Uint8Array {
  const w = new PbWriter(values.reduce((n, v) => n + (v?.length ?? 0) + 6, 16))
  for (const v of values) {
    w.tag(field, WireType.LengthDelimited).bytes(v ?? new Uint8Array(0))
  }
  return w.finish()
}

function varintLength (n: number): number {
  let len = 1
  while (n > 0x7f) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/** Encode one frame (without the length prefix). */
export function encodeSyncFrame (frame: SyncFrame): Uint8Array {
  const { id, body } = frame
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw badMessage(`request id ${id} is not a uint32`)
  }
  if (body.type === 'chunk') {
    // written in place: a chunk is megabytes and should be copied once
    const inner = 1 + varintLength(body.data.length) + body.data.length
    const w = new PbWriter(inner + 16)
    w.tag(F.id, WireType.Varint).uint32(id)
    w.tag(F.chunk, WireType.LengthDelimited).uint32(inner)
    w.tag(1, WireType.LengthDelimited).bytes(body.data)
    return w.finish()
  }
  let field: number
  let inner: Uint8Array
  switch (body.type) {
    case 'get-tips':
      field = F.getTips
      inner = new Uint8Array(0)
      break
    case 'get-headers':
      checkIds(body.ids)
      field = F.getHeaders
      inner = repeatedBytes(1, body.ids)
      break
    case 'get-have':
      checkIds(body.ids)
      field = F.getHave
      inner = repeatedBytes(1, body.ids)
      break
    case 'get-chunk': {
      checkIds([body.id])
      if (!Number.isInteger(body.index) || body.index < 0 || body.index > 0xffffffff) {
        throw badMessage(`chunk index ${body.index} is not a uint32`)
      }
      field = F.getChunk
      const w = new PbWriter(48)
      w.tag(1, WireType.LengthDelimited).bytes(body.id)
      w.tag(2, WireType.Varint).uint32(body.index)
      inner = w.finish()
      break
    }
    case 'tips':
      checkIds(body.ids)
      field = F.tips
      inner = repeatedBytes(1, body.ids)
      break
    case 'headers':
      if (body.headers.length > MAX_IDS_PER_MESSAGE) {
        throw badMessage(`${body.headers.length} headers, at most ${MAX_IDS_PER_MESSAGE} allowed`)
      }
      field = F.headers
      inner = repeatedBytes(1, body.headers)
      break
    case 'have':
      field = F.have
      inner = repeatedBytes(1, [Uint8Array.from(body.status)])
      break
    case 'error': {
      field = F.error
      const w = new PbWriter(64)
      w.tag(1, WireType.Varint).uint32(body.code)
      w.tag(2, WireType.LengthDelimited).bytes(utf8Encoder.encode(body.message))
      inner = w.finish()
      break
    }
    default:
      throw badMessage(`unknown body ${(body as { type: string }).type}`)
  }
  const w = new PbWriter(inner.length + 16)
  w.tag(F.id, WireType.Varint).uint32(id)
  w.tag(field, WireType.LengthDelimited).bytes(inner)
  return w.finish()
}

function expectWireType (field: number, got: number, want: number): void {
  if (got !== want) {
    throw badMessage(`field ${field} has wire type ${got}, expected ${want}`)
  }
}

/** Read every field-1 bytes value of a nested message. */
function readRepeatedBytes (bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  const r = new PbReader(bytes)
  while (!r.done()) {
    const [field, wt] = r.tag()
    if (field !== 1) {
      throw badMessage(`unknown field ${field}`)
    }
    expectWireType(field, wt, WireType.LengthDelimited)
    out.push(r.bytes())
    if (out.length > MAX_IDS_PER_MESSAGE) {
      throw badMessage(`more than ${MAX_IDS_PER_MESSAGE} entries`)
    }
  }
  return out
}

function decodeGetChunk (inner: Uint8Array): SyncRequest {
  let id: Uint8Array | undefined
  let index = 0
  const r = new PbReader(inner)
  while (!r.done()) {
    const [f, wt] = r.tag()
    if (f === 1) {
      expectWireType(f, wt, WireType.LengthDelimited)
      id = r.bytes()
    } else if (f === 2) {
      expectWireType(f, wt, WireType.Varint)
      index = r.uint32()
    } else {
      throw badMessage(`unknown GetChunk field ${f}`)
    }
  }
  if (id == null) {
    throw badMessage('GetChunk lacks the block id')
  }
  checkIds([id])
  return { type: 'get-chunk', id, index }
}

function decodeError (inner: Uint8Array): SyncResponse {
  let code = 0
  let message = ''
  const r = new PbReader(inner)
  while (!r.done()) {
    const [f, wt] = r.tag()
    if (f === 1) {
      expectWireType(f, wt, WireType.Varint)
      code = r.uint32()
    } else if (f === 2) {
      expectWireType(f, wt, WireType.LengthDelimited)
      message = utf8Decoder.decode(r.bytes())
    } else {
      throw badMessage(`unknown Error field ${f}`)
    }
  }
  if (code < SyncErrorCode.NOT_FOUND || code > SyncErrorCode.INTERNAL) {
    throw badMessage(`unknown error code ${code}`)
  }
  return { type: 'error', code: code as SyncErrorCode, message }
}

function decodeBody (field: number, inner: Uint8Array): SyncMessage {
  switch (field) {
    case F.getTips:
      if (inner.length !== 0) {
        throw badMessage('GetTips carries no fields')
      }
      return { type: 'get-tips' }
    case F.getHeaders: {
      const ids = readRepeatedBytes(inner)
      checkIds(ids)
      return { type: 'get-headers', ids }
    }
    case F.getHave: {
      const ids = readRepeatedBytes(inner)
      checkIds(ids)
      return { type: 'get-have', ids }
    }
    case F.getChunk:
      return decodeGetChunk(inner)
    case F.tips: {
      const ids = readRepeatedBytes(inner)
      checkIds(ids)
      return { type: 'tips', ids }
    }
    case F.headers:
      return { type: 'headers', headers: readRepeatedBytes(inner).map(h => h.length === 0 ? undefined : h) }
    case F.have: {
      const [status] = readRepeatedBytes(inner)
      const values = [...(status ?? [])]
      if (values.some(v => v > HaveStatus.Complete)) {
        throw badMessage('unknown have status')
      }
      return { type: 'have', status: values as HaveStatus[] }
    }
    case F.chunk: {
      const [data] = readRepeatedBytes(inner)
      return { type: 'chunk', data: data ?? new Uint8Array(0) }
    }
    case F.error:
      return decodeError(inner)
    default:
      throw badMessage(`unknown frame field ${field}`)
  }
}

/** Decode one frame; throws NetError ERR_SYNC_BAD_MESSAGE on anything malformed. */
export function decodeSyncFrame (bytes: Uint8Array): SyncFrame {
  try {
    let id: number | undefined
    let body: SyncMessage | undefined
    const r = new PbReader(bytes)
    while (!r.done()) {
      const [field, wt] = r.tag()
      if (field === F.id) {
        expectWireType(field, wt, WireType.Varint)
        id = r.uint32()
        continue
      }
      expectWireType(field, wt, WireType.LengthDelimited)
      if (body != null) {
        throw badMessage('more than one body')
      }
      body = decodeBody(field, r.bytes())
    }
    if (body == null) {
      throw badMessage('no body')
    }
    return { id: id ?? 0, body }
  } catch (err) {
    if (err instanceof WireError) {
      throw badMessage(err.message, err)
    }
    if (err instanceof TypeError) {
      // invalid UTF-8 in an error message
      throw badMessage(err.message, err)
    }
    throw err
  }
}
