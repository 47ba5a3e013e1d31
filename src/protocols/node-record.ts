/**
 * Canonical protobuf codec of node records: what a serving node announces
 * about itself (span of decoder layers, addresses, backend, live stats,
 * expiry), signed with its libp2p Ed25519 identity key.
 *
 * NodeRecord fields, written in this order with minimal varints and zero /
 * empty values omitted (no floats anywhere): 1 version uint32 (always
 * present); 2 peer_id bytes (peer id multihash, always present); 3 addrs
 * repeated bytes (multiaddrs, in the announcer's order); 4 model_id bytes
 * (32, always present); 5 start uint32 (first decoder layer held); 6 end
 * uint32 (one past the last); 7 flags uint32 (bit 0 embedding, bit 1 final
 * norm + head, bit 2 movable: `--layers auto`, the planner may move it); 8 backend string; 9 throughput_milli uint64 (tokens/s
 * through the whole span, x1000); 10 free_sessions uint32; 11 queue_length
 * uint32 (queued work in whole-span steps, rounded up); 12 seq uint64 (strictly increasing per peer); 13 expires_at uint64
 * (unix ms); 14 memory_bytes uint64 (bytes the node devotes to layers, its
 * span included; 0 = not said); 15 weights_version bytes (32: the id of the
 * weights version the span serves, protocols/versions.md; absent = not
 * said, a node that knows no versions); 16 adapter string (the GPU adapter
 * the span runs on, "vendor architecture device" as WebGPU names it, e.g.
 * "nvidia hopper NVIDIA H200"; absent = no GPU adapter said). On a GPU
 * backend memory_bytes is the device memory the planner may use (WebGPU does
 * not report it: the operator's --memory-bytes).
 *
 * SignedNodeRecord: 1 record bytes, 2 signature (64 bytes) over
 * NODE_RECORD_SIGNING_DOMAIN || record bytes.
 *
 * Decoders are strict: they re-encode and reject anything not byte-identical.
 */
import { peerIdFromMultihash } from '@libp2p/peer-id'
import * as Digest from 'multiformats/hashes/digest'
import { PbReader, PbWriter, WireError, WireType, equalBytes, signedEnvelopeCodec } from './pb-wire.ts'
import { RecordError, RecordErrorCode } from './record-errors.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export const NODE_RECORD_VERSION = 1
export const MODEL_ID_LENGTH = 32
export const NODE_RECORD_SIGNATURE_LENGTH = 64
/** prefix of the signed bytes, so a node record signature never doubles as another message's */
export const NODE_RECORD_SIGNING_DOMAIN = new TextEncoder().encode('bly/node-record/v1\n')

export const NodeRecordFlags = {
  Embedding: 1,
  Head: 2,
  /** the node chose its span with `--layers auto` and re-plans: the planner may move it */
  Movable: 4
} as const

const ALL_FLAGS = NodeRecordFlags.Embedding | NodeRecordFlags.Head | NodeRecordFlags.Movable

const F = {
  version: 1,
  peerId: 2,
  addrs: 3,
  modelId: 4,
  start: 5,
  end: 6,
  flags: 7,
  backend: 8,
  throughputMilli: 9,
  freeSessions: 10,
  queueLength: 11,
  seq: 12,
  expiresAt: 13,
  memoryBytes: 14,
  weightsVersion: 15,
  adapter: 16
} as const

/** Bytes of a weights version id (sha256). */
export const WEIGHTS_VERSION_LENGTH = 32

export interface NodeRecord {
  version: number
  /** the announcing peer's id as multihash bytes (`peerId.toMultihash().bytes`) */
  peerId: Uint8Array
  /** multiaddr bytes the peer can be dialled on */
  addrs: Uint8Array[]
  /** 32-byte model id (the model's manifest block id) */
  modelId: Uint8Array
  /** first decoder layer held */
  start: number
  /** one past the last decoder layer held */
  end: number
  holdsEmbedding: boolean
  holdsHead: boolean
  /** the node runs `--layers auto` and may move to another span (a fixed `--layers A-B` node does not) */
  movable: boolean
  /** bytes the node devotes to layers, its span included (0 = not said) */
  memoryBytes: number
  /** the weights version the span serves (32 bytes), empty when not said */
  weightsVersion: Uint8Array
  /** compute backend name, e.g. `tensorflow`, `webgpu`, `wasm`, `cpu` */
  backend: string
  /** the GPU adapter the span runs on ("vendor architecture device"); absent or empty = none said */
  adapter?: string
  /** measured tokens per second through the whole span, in thousandths */
  throughputMilli: number
  /** sessions the node can still accept */
  freeSessions: number
  /** work queued at the node, in whole-span steps (a step of a session over k of the span's n layers counts k / n), rounded up */
  queueLength: number
  /** strictly increasing per peer; the newest record wins */
  seq: number
  /** unix ms after which the record is void (a withdrawal sets it to the withdrawal time) */
  expiresAt: number
}

export interface SignedNodeRecordMessage {
  record: Uint8Array
  signature: Uint8Array
}

const utf8Encoder = new TextEncoder()

function encodingError (message: string, cause?: unknown): RecordError {
  return new RecordError(RecordErrorCode.ENCODING, message, cause != null ? { cause } : undefined)
}

const signedRecordCodec = signedEnvelopeCodec('record', NODE_RECORD_SIGNATURE_LENGTH, encodingError)

function checkUint (name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw encodingError(`${name} out of range: ${value}`)
  }
}

function checkWeightsVersion (v: Uint8Array): void {
  if (v.length !== 0 && v.length !== WEIGHTS_VERSION_LENGTH) {
    throw encodingError(`weights version is ${v.length} bytes, expected ${WEIGHTS_VERSION_LENGTH} (or none)`)
  }
}

function decodeUtf8 (bytes: Uint8Array, name: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch (err) {
    throw encodingError(`${name} is not valid UTF-8`, err)
  }
}

/** Throws ERR_RECORD_ENCODING when a field of `record` cannot be encoded. */
function checkEncodable (record: NodeRecord): void {
  if (record.version !== NODE_RECORD_VERSION) {
    throw encodingError(`unsupported node record version ${record.version}`)
  }
  if (record.peerId.length === 0) {
    throw encodingError('empty peer id')
  }
  if (record.modelId.length !== MODEL_ID_LENGTH) {
    throw encodingError(`model id is ${record.modelId.length} bytes, expected ${MODEL_ID_LENGTH}`)
  }
  checkUint('start', record.start, 0xffffffff)
  checkUint('end', record.end, 0xffffffff)
  checkUint('throughputMilli', record.throughputMilli, Number.MAX_SAFE_INTEGER)
  checkUint('freeSessions', record.freeSessions, 0xffffffff)
  checkUint('queueLength', record.queueLength, 0xffffffff)
  checkUint('seq', record.seq, Number.MAX_SAFE_INTEGER)
  checkUint('expiresAt', record.expiresAt, Number.MAX_SAFE_INTEGER)
  checkUint('memoryBytes', record.memoryBytes, Number.MAX_SAFE_INTEGER)
  checkWeightsVersion(record.weightsVersion)
}

/** The canonical encoding of `record`. Throws ERR_RECORD_ENCODING when a field cannot be encoded. */
export function encodeNodeRecord (record: NodeRecord): Uint8Array {
  checkEncodable(record)
  const w = new PbWriter(256)
  w.tag(F.version, WireType.Varint).uint32(record.version)
  w.tag(F.peerId, WireType.LengthDelimited).bytes(record.peerId)
  for (const addr of record.addrs) {
    if (addr.length === 0) {
      throw encodingError('empty multiaddr')
    }
    w.tag(F.addrs, WireType.LengthDelimited).bytes(addr)
  }
  w.tag(F.modelId, WireType.LengthDelimited).bytes(record.modelId)
  if (record.start !== 0) {
    w.tag(F.start, WireType.Varint).uint32(record.start)
  }
  if (record.end !== 0) {
    w.tag(F.end, WireType.Varint).uint32(record.end)
  }
  const flags = (record.holdsEmbedding ? NodeRecordFlags.Embedding : 0) | (record.holdsHead ? NodeRecordFlags.Head : 0) | (record.movable ? NodeRecordFlags.Movable : 0)
  if (flags !== 0) {
    w.tag(F.flags, WireType.Varint).uint32(flags)
  }
  if (record.backend.length > 0) {
    w.tag(F.backend, WireType.LengthDelimited).bytes(utf8Encoder.encode(record.backend))
  }
  if (record.throughputMilli !== 0) {
    w.tag(F.throughputMilli, WireType.Varint).uint64(BigInt(record.throughputMilli))
  }
  if (record.freeSessions !== 0) {
    w.tag(F.freeSessions, WireType.Varint).uint32(record.freeSessions)
  }
  if (record.queueLength !== 0) {
    w.tag(F.queueLength, WireType.Varint).uint32(record.queueLength)
  }
  if (record.seq !== 0) {
    w.tag(F.seq, WireType.Varint).uint64(BigInt(record.seq))
  }
  if (record.expiresAt !== 0) {
    w.tag(F.expiresAt, WireType.Varint).uint64(BigInt(record.expiresAt))
  }
  if (record.memoryBytes !== 0) {
    w.tag(F.memoryBytes, WireType.Varint).uint64(BigInt(record.memoryBytes))
  }
  if (record.weightsVersion.length !== 0) {
    w.tag(F.weightsVersion, WireType.LengthDelimited).bytes(record.weightsVersion)
  }
  if (record.adapter != null && record.adapter.length > 0) {
    w.tag(F.adapter, WireType.LengthDelimited).bytes(utf8Encoder.encode(record.adapter))
  }
  return w.finish()
}

function expectWireType (field: number, actual: number, expected: WireType): void {
  if (actual !== expected) {
    throw encodingError(`field ${field} has wire type ${actual}, expected ${expected}`)
  }
}

function safeUint64 (r: PbReader, name: string): number {
  const v = r.uint64()
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw encodingError(`${name} exceeds 2^53-1`)
  }
  return Number(v)
}

function setFlags (record: NodeRecord, flags: number): void {
  if ((flags & ~ALL_FLAGS) !== 0) {
    throw encodingError(`unknown flag bits ${flags}`)
  }
  record.holdsEmbedding = (flags & NodeRecordFlags.Embedding) !== 0
  record.holdsHead = (flags & NodeRecordFlags.Head) !== 0
  record.movable = (flags & NodeRecordFlags.Movable) !== 0
}

/** Reads one field of a node record into `record`; throws on an unknown field or a wrong wire type. */
function readField (record: NodeRecord, r: PbReader, field: number, wt: number): void {
  switch (field) {
    case F.version:
      expectWireType(field, wt, WireType.Varint)
      record.version = r.uint32()
      break
    case F.peerId:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.peerId = r.bytes()
      break
    case F.addrs:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.addrs.push(r.bytes())
      break
    case F.modelId:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.modelId = r.bytes()
      break
    case F.start:
      expectWireType(field, wt, WireType.Varint)
      record.start = r.uint32()
      break
    case F.end:
      expectWireType(field, wt, WireType.Varint)
      record.end = r.uint32()
      break
    case F.flags:
      expectWireType(field, wt, WireType.Varint)
      setFlags(record, r.uint32())
      break
    case F.backend:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.backend = decodeUtf8(r.bytes(), 'backend')
      break
    case F.throughputMilli:
      expectWireType(field, wt, WireType.Varint)
      record.throughputMilli = safeUint64(r, 'throughputMilli')
      break
    case F.freeSessions:
      expectWireType(field, wt, WireType.Varint)
      record.freeSessions = r.uint32()
      break
    case F.queueLength:
      expectWireType(field, wt, WireType.Varint)
      record.queueLength = r.uint32()
      break
    case F.seq:
      expectWireType(field, wt, WireType.Varint)
      record.seq = safeUint64(r, 'seq')
      break
    case F.expiresAt:
      expectWireType(field, wt, WireType.Varint)
      record.expiresAt = safeUint64(r, 'expiresAt')
      break
    case F.memoryBytes:
      expectWireType(field, wt, WireType.Varint)
      record.memoryBytes = safeUint64(r, 'memoryBytes')
      break
    case F.weightsVersion:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.weightsVersion = r.bytes()
      break
    case F.adapter:
      expectWireType(field, wt, WireType.LengthDelimited)
      record.adapter = decodeUtf8(r.bytes(), 'adapter')
      break
    default:
      throw encodingError(`unknown node record field ${field}`)
  }
}

/** Strictly decode canonical node record bytes (structure only: no signature, range or expiry checks). */
export function decodeNodeRecord (bytes: Uint8Array): NodeRecord {
  const record: NodeRecord = {
    version: 0,
    peerId: new Uint8Array(0),
    addrs: [],
    modelId: new Uint8Array(0),
    start: 0,
    end: 0,
    holdsEmbedding: false,
    holdsHead: false,
    movable: false,
    memoryBytes: 0,
    weightsVersion: new Uint8Array(0),
    backend: '',
    throughputMilli: 0,
    freeSessions: 0,
    queueLength: 0,
    seq: 0,
    expiresAt: 0
  }
  try {
    const r = new PbReader(bytes)
    while (!r.done()) {
      const [field, wt] = r.tag()
      readField(record, r, field, wt)
    }
  } catch (err) {
    if (err instanceof WireError) {
      throw encodingError(`malformed node record: ${err.message}`, err)
    }
    throw err
  }
  if (!equalBytes(encodeNodeRecord(record), bytes)) {
    throw encodingError('node record encoding is not canonical')
  }
  return record
}

export function encodeSignedNodeRecord (msg: SignedNodeRecordMessage): Uint8Array {
  return signedRecordCodec.encode(msg)
}

/** Strictly decode a signed envelope (canonical, both fields present, 64-byte signature). */
export function decodeSignedNodeRecord (bytes: Uint8Array): SignedNodeRecordMessage {
  return signedRecordCodec.decode(bytes)
}

function signedBytes (record: Uint8Array): Uint8Array {
  const out = new Uint8Array(NODE_RECORD_SIGNING_DOMAIN.length + record.length)
  out.set(NODE_RECORD_SIGNING_DOMAIN, 0)
  out.set(record, NODE_RECORD_SIGNING_DOMAIN.length)
  return out
}

/** Encode and sign `record` with `privateKey` (which must be the key of `record.peerId`); returns the envelope bytes. */
export async function signNodeRecord (record: NodeRecord, privateKey: PrivateKey): Promise<Uint8Array> {
  if (privateKey.type !== 'Ed25519') {
    throw new RecordError(RecordErrorCode.UNSUPPORTED_PEER, `node records are signed with Ed25519 keys, not ${privateKey.type}`)
  }
  if (!equalBytes(privateKey.publicKey.toMultihash().bytes, record.peerId)) {
    throw new RecordError(RecordErrorCode.MISMATCH, 'the signing key is not the key of the record\'s peer id')
  }
  const bytes = encodeNodeRecord(record)
  const signature = await privateKey.sign(signedBytes(bytes))
  return encodeSignedNodeRecord({ record: bytes, signature })
}

/** The peer id a record names; throws ERR_RECORD_UNSUPPORTED_PEER unless it is an Ed25519 id with its key inline. */
export function recordPeerId (peerIdBytes: Uint8Array): PeerId {
  let peer: PeerId
  try {
    peer = peerIdFromMultihash(Digest.decode(peerIdBytes))
  } catch (err) {
    throw new RecordError(RecordErrorCode.UNSUPPORTED_PEER, 'record peer id is not a valid peer id multihash', { cause: err })
  }
  if (peer.type !== 'Ed25519' || peer.publicKey == null) {
    throw new RecordError(RecordErrorCode.UNSUPPORTED_PEER, `record peer id is a ${peer.type} id; only Ed25519 ids are accepted`)
  }
  return peer
}

export interface OpenedNodeRecord {
  record: NodeRecord
  peerId: PeerId
}

/**
 * Decode a signed node record and verify its signature against the peer id it
 * names. Structure and signature only: ranges, expiry and key matching are
 * the caller's (see `verifyNodeRecord`).
 */
export async function openSignedNodeRecord (bytes: Uint8Array): Promise<OpenedNodeRecord> {
  const msg = decodeSignedNodeRecord(bytes)
  const record = decodeNodeRecord(msg.record)
  const peerId = recordPeerId(record.peerId)
  const ok = await (peerId.publicKey as NonNullable<PeerId['publicKey']>).verify(signedBytes(msg.record), msg.signature)
  if (!ok) {
    throw new RecordError(RecordErrorCode.SIGNATURE, `node record signature does not verify for ${peerId.toString()}`)
  }
  return { record, peerId }
}
