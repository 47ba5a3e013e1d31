/**
 * Inference receipts and the Receipt block (normative text:
 * protocols/ledger.md): the canonical receipt a client and a stage co-sign
 * for one generation, its id, the batch a stage publishes as a Receipt
 * block's payload, and the Merkle root the block's header names.
 *
 * Receipt body, integers little-endian, fixed width (RECEIPT_BODY_BYTES):
 * u8 version (= 1), model (32), version id (32), governance state id (32,
 * the params whose price the two agreed), session (16), client key (32),
 * stage key (32), u64 nonce, u32 layerStart, u32 layerEnd, u32 positions,
 * u32 tokens, u64 time (ms since the epoch). A signed receipt is the body
 * then the client's and the stage's Ed25519 signatures (64 each) of
 * utf8(RECEIPT_DOMAIN) || body. Its id is sha256(utf8(RECEIPT_ID_DOMAIN) ||
 * body): signatures are not part of the id, so no re-signing yields a
 * second id for one receipt.
 *
 * Batch (a Receipt block's payload): u8 version (= 1), u32 count
 * (1..MAX_RECEIPTS_PER_BLOCK), then `count` signed receipts, ids strictly
 * ascending. No bytes follow. One list of receipts has exactly one batch.
 *
 * Merkle root (the header's `root`): leaf = sha256(0x00 || u32le(length) ||
 * signed receipt), node = sha256(0x01 || left || right), leaves in batch
 * order; a level of odd length carries its last node up unchanged. Leaves
 * are length-prefixed and tagged apart from nodes, so no two lists of
 * receipts (nor a leaf and a node) hash alike.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */
import { createHash } from 'node:crypto'
import { BlydError } from './errors.ts'

/** Receipt body and batch format version written and accepted. */
export const RECEIPT_VERSION = 1

/** Domain of both signatures of a receipt: Ed25519 over utf8(domain) || body. */
export const RECEIPT_DOMAIN = 'bly/receipt/v1'

/** Domain of a receipt's id: sha256(utf8(domain) || body). */
export const RECEIPT_ID_DOMAIN = 'bly/receipt-id/v1'

/** Bytes of a session id (random, chosen by the client per generation). */
export const RECEIPT_SESSION_BYTES = 16

/** Bytes of a receipt body. */
export const RECEIPT_BODY_BYTES = 1 + 32 + 32 + 32 + RECEIPT_SESSION_BYTES + 32 + 32 + 8 + 4 + 4 + 4 + 4 + 8

/** Bytes of a signed receipt: the body and two 64-byte signatures. */
export const SIGNED_RECEIPT_BYTES = RECEIPT_BODY_BYTES + 64 + 64

/** Most receipts one Receipt block carries. */
export const MAX_RECEIPTS_PER_BLOCK = 4096

/** Bytes before the receipts of a batch: version and count. */
export const RECEIPT_BATCH_HEADER_BYTES = 5

/** The payload size of a batch of `count` receipts (what a Receipt header's size must be). */
export function receiptBatchBytes (count: number): number {
  return RECEIPT_BATCH_HEADER_BYTES + count * SIGNED_RECEIPT_BYTES
}

/** The header fields of a Receipt block (type 9, chain A), authored by the stage that co-signed every receipt in it. */
export const ReceiptField = {
  /** bytes32: the model manifest id (every receipt names it) */
  MODEL: 'model',
  /** uint: receipts in the payload, 1..MAX_RECEIPTS_PER_BLOCK */
  RECEIPTS: 'receipts',
  /** bytes32: the Merkle root of the receipts (file comment) */
  ROOT: 'root'
} as const

const MAX_U32 = 0xffff_ffff
const MAX_U64 = 0xffff_ffff_ffff_ffffn

/** What client and stage agree on for one generation's work on one stage. */
export interface ReceiptBody {
  model: Uint8Array
  /** the weights version served (protocols/versions.md) */
  version: Uint8Array
  /** the governance state whose `priceLayerPosition` applies */
  governance: Uint8Array
  session: Uint8Array
  /** the paying client's Ed25519 public key */
  client: Uint8Array
  /** the paid stage's Ed25519 public key */
  stage: Uint8Array
  /** unique per (client, stage): the client never signs one nonce twice for a stage */
  nonce: bigint
  /** decoder layers [layerStart, layerEnd) the stage ran */
  layerStart: number
  layerEnd: number
  /** positions the stage ran its layers on (prompt and generated) */
  positions: number
  /** tokens generated in the session */
  tokens: number
  /** ms since the epoch when the session closed */
  time: bigint
}

/** A receipt with both signatures. */
export interface SignedReceipt extends ReceiptBody {
  clientSig: Uint8Array
  stageSig: Uint8Array
}

/** A receipt of a decoded batch: the values, and views of its bytes. */
export interface BatchReceipt {
  receipt: SignedReceipt
  /** the body (what both signatures cover after the domain) */
  body: Uint8Array
  /** the whole signed receipt (a Merkle leaf) */
  bytes: Uint8Array
  /** receiptId(body) */
  id: Uint8Array
}

export const ReceiptCodecErrorCode = {
  /** bytes end inside a receipt or the batch header */
  TRUNCATED: 'ERR_RECEIPT_CODEC_TRUNCATED',
  /** bytes follow the last receipt */
  TRAILING: 'ERR_RECEIPT_CODEC_TRAILING',
  /** a format version other than RECEIPT_VERSION */
  VERSION: 'ERR_RECEIPT_CODEC_VERSION',
  /** a batch of 0 or more than MAX_RECEIPTS_PER_BLOCK receipts */
  COUNT: 'ERR_RECEIPT_CODEC_COUNT',
  /** receipt ids not strictly ascending in a batch (out of order, or one receipt twice) */
  ORDER: 'ERR_RECEIPT_CODEC_ORDER',
  /** a value out of its width, or a key, id or signature of the wrong length */
  VALUE: 'ERR_RECEIPT_CODEC_VALUE'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ReceiptCodecErrorCode = typeof ReceiptCodecErrorCode[keyof typeof ReceiptCodecErrorCode]

/** A receipt or batch that breaks a rule of protocols/ledger.md. */
export class ReceiptCodecError extends BlydError {
  constructor (code: ReceiptCodecErrorCode, message: string) {
    super(code, message)
    this.name = 'ReceiptCodecError'
  }
}

function bytesOf (value: Uint8Array, length: number, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.VALUE, `${what} must be ${length} bytes`)
  }
  return value
}

function u32 (value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.VALUE, `${what} must be a u32 (got ${String(value)})`)
  }
  return value
}

function u64 (value: bigint, what: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > MAX_U64) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.VALUE, `${what} must be a u64 (got ${String(value)})`)
  }
  return value
}

/** The canonical body of `r` (RECEIPT_BODY_BYTES). Throws ReceiptCodecError VALUE on a field out of range. */
export function encodeReceiptBody (r: ReceiptBody): Uint8Array {
  const out = new Uint8Array(RECEIPT_BODY_BYTES)
  const view = new DataView(out.buffer)
  let at = 0
  out[at++] = RECEIPT_VERSION
  for (const [value, length, what] of [
    [r.model, 32, 'model'], [r.version, 32, 'version'], [r.governance, 32, 'governance'],
    [r.session, RECEIPT_SESSION_BYTES, 'session'], [r.client, 32, 'client key'], [r.stage, 32, 'stage key']
  ] as Array<[Uint8Array, number, string]>) {
    out.set(bytesOf(value, length, what), at)
    at += length
  }
  view.setBigUint64(at, u64(r.nonce, 'nonce'), true)
  at += 8
  for (const [value, what] of [[r.layerStart, 'layerStart'], [r.layerEnd, 'layerEnd'], [r.positions, 'positions'], [r.tokens, 'tokens']] as Array<[number, string]>) {
    view.setUint32(at, u32(value, what), true)
    at += 4
  }
  view.setBigUint64(at, u64(r.time, 'time'), true)
  return out
}

/** Decodes a receipt body (exactly RECEIPT_BODY_BYTES); the byte fields are copies. */
export function decodeReceiptBody (body: Uint8Array): ReceiptBody {
  if (body.length < RECEIPT_BODY_BYTES) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRUNCATED, `a receipt body is ${RECEIPT_BODY_BYTES} bytes, got ${body.length}`)
  }
  if (body.length > RECEIPT_BODY_BYTES) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRAILING, `a receipt body is ${RECEIPT_BODY_BYTES} bytes, got ${body.length}`)
  }
  if (body[0] !== RECEIPT_VERSION) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.VERSION, `receipt version ${body[0]}, expected ${RECEIPT_VERSION}`)
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let at = 1
  const take = (n: number): Uint8Array => {
    const v = body.slice(at, at + n)
    at += n
    return v
  }
  const model = take(32)
  const version = take(32)
  const governance = take(32)
  const session = take(RECEIPT_SESSION_BYTES)
  const client = take(32)
  const stage = take(32)
  const nonce = view.getBigUint64(at, true)
  at += 8
  const layerStart = view.getUint32(at, true)
  const layerEnd = view.getUint32(at + 4, true)
  const positions = view.getUint32(at + 8, true)
  const tokens = view.getUint32(at + 12, true)
  const time = view.getBigUint64(at + 16, true)
  return { model, version, governance, session, client, stage, nonce, layerStart, layerEnd, positions, tokens, time }
}

/** What both parties sign: utf8(RECEIPT_DOMAIN) || body. */
export function receiptMessage (body: Uint8Array): Uint8Array {
  const domain = Buffer.from(RECEIPT_DOMAIN, 'utf8')
  const out = new Uint8Array(domain.length + body.length)
  out.set(domain)
  out.set(body, domain.length)
  return out
}

/** A receipt's id: sha256(utf8(RECEIPT_ID_DOMAIN) || body). */
export function receiptId (body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(RECEIPT_ID_DOMAIN, 'utf8').update(body).digest())
}

/** A signed receipt's bytes: the body then the client's and the stage's signatures. */
export function encodeSignedReceipt (r: SignedReceipt): Uint8Array {
  const out = new Uint8Array(SIGNED_RECEIPT_BYTES)
  out.set(encodeReceiptBody(r))
  out.set(bytesOf(r.clientSig, 64, 'client signature'), RECEIPT_BODY_BYTES)
  out.set(bytesOf(r.stageSig, 64, 'stage signature'), RECEIPT_BODY_BYTES + 64)
  return out
}

/** Decodes one signed receipt (exactly SIGNED_RECEIPT_BYTES). */
export function decodeSignedReceipt (bytes: Uint8Array): BatchReceipt {
  if (bytes.length < SIGNED_RECEIPT_BYTES) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRUNCATED, `a signed receipt is ${SIGNED_RECEIPT_BYTES} bytes, got ${bytes.length}`)
  }
  if (bytes.length > SIGNED_RECEIPT_BYTES) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRAILING, `a signed receipt is ${SIGNED_RECEIPT_BYTES} bytes, got ${bytes.length}`)
  }
  const body = bytes.subarray(0, RECEIPT_BODY_BYTES)
  const receipt: SignedReceipt = {
    ...decodeReceiptBody(body),
    clientSig: bytes.slice(RECEIPT_BODY_BYTES, RECEIPT_BODY_BYTES + 64),
    stageSig: bytes.slice(RECEIPT_BODY_BYTES + 64, SIGNED_RECEIPT_BYTES)
  }
  return { receipt, body, bytes, id: receiptId(body) }
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return a[i] - b[i]
    }
  }
  return a.length - b.length
}

/** The canonical batch of `receipts` (any order: sorted by id here). Throws ORDER when one receipt is given twice. */
export function encodeReceiptBatch (receipts: SignedReceipt[]): Uint8Array {
  if (receipts.length < 1 || receipts.length > MAX_RECEIPTS_PER_BLOCK) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.COUNT, `a batch holds 1..${MAX_RECEIPTS_PER_BLOCK} receipts, not ${receipts.length}`)
  }
  const items = receipts.map(r => {
    const bytes = encodeSignedReceipt(r)
    return { bytes, id: receiptId(bytes.subarray(0, RECEIPT_BODY_BYTES)) }
  }).sort((a, b) => compareBytes(a.id, b.id))
  const out = new Uint8Array(receiptBatchBytes(items.length))
  out[0] = RECEIPT_VERSION
  new DataView(out.buffer).setUint32(1, items.length, true)
  items.forEach((item, i) => {
    if (i > 0 && compareBytes(items[i - 1].id, item.id) === 0) {
      throw new ReceiptCodecError(ReceiptCodecErrorCode.ORDER, 'a batch holds one receipt twice')
    }
    out.set(item.bytes, receiptBatchBytes(i))
  })
  return out
}

/**
 * Decodes a batch, checking every rule of the file comment: version, count,
 * exact length, ids strictly ascending. The receipts' byte fields are views
 * of `bytes` where the file comment says so (body, bytes).
 */
export function decodeReceiptBatch (bytes: Uint8Array): BatchReceipt[] {
  if (bytes.length < RECEIPT_BATCH_HEADER_BYTES) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRUNCATED, `a receipt batch of ${bytes.length} bytes has no header`)
  }
  if (bytes[0] !== RECEIPT_VERSION) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.VERSION, `receipt batch version ${bytes[0]}, expected ${RECEIPT_VERSION}`)
  }
  const count = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1, true)
  if (count < 1 || count > MAX_RECEIPTS_PER_BLOCK) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.COUNT, `a batch holds 1..${MAX_RECEIPTS_PER_BLOCK} receipts, not ${count}`)
  }
  const size = receiptBatchBytes(count)
  if (bytes.length < size) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRUNCATED, `a batch of ${count} receipts is ${size} bytes, got ${bytes.length}`)
  }
  if (bytes.length > size) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.TRAILING, `${bytes.length - size} bytes follow the last of ${count} receipts`)
  }
  const out: BatchReceipt[] = []
  for (let i = 0; i < count; i++) {
    const at = receiptBatchBytes(i)
    const r = decodeSignedReceipt(bytes.subarray(at, at + SIGNED_RECEIPT_BYTES))
    if (i > 0 && compareBytes(out[i - 1].id, r.id) >= 0) {
      throw new ReceiptCodecError(ReceiptCodecErrorCode.ORDER, `receipt ${i} does not follow receipt ${i - 1} in id order`)
    }
    out.push(r)
  }
  return out
}

/** The Merkle leaf of one signed receipt: sha256(0x00 || u32le(length) || bytes). */
export function receiptLeaf (bytes: Uint8Array): Uint8Array {
  const prefix = new Uint8Array(5)
  new DataView(prefix.buffer).setUint32(1, bytes.length, true)
  return new Uint8Array(createHash('sha256').update(prefix).update(bytes).digest())
}

/** The Merkle root of signed receipts in batch order (file comment). Throws COUNT for none. */
export function receiptsRoot (receipts: Uint8Array[]): Uint8Array {
  if (receipts.length === 0) {
    throw new ReceiptCodecError(ReceiptCodecErrorCode.COUNT, 'the root of no receipts is not defined')
  }
  let level = receipts.map(receiptLeaf)
  const tag = Uint8Array.of(1)
  while (level.length > 1) {
    const next: Uint8Array[] = []
    for (let i = 0; i + 1 < level.length; i += 2) {
      next.push(new Uint8Array(createHash('sha256').update(tag).update(level[i]).update(level[i + 1]).digest()))
    }
    if (level.length % 2 === 1) {
      next.push(level[level.length - 1])
    }
    level = next
  }
  return level[0]
}
