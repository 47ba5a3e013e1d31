/**
 * DHT keys of the mesh: one node-record key per (model, peer) and one
 * provider key (a CID) per (model, decoder layer), so `findProviders` on a
 * layer key finds every node holding that layer.
 */
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { MODEL_ID_LENGTH } from '../../protocols/node-record.ts'
import { LAYER_KEY_DOMAIN, NODE_RECORD_KEY_PREFIX } from './constants.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import type { PeerId } from '@libp2p/interface'

/** multicodec `raw` and multihash `sha2-256` */
const RAW_CODEC = 0x55
const SHA2_256 = 0x12

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()
const HEX_MODEL_ID = /^[0-9a-f]{64}$/

function checkModelId (modelId: Uint8Array): void {
  if (!(modelId instanceof Uint8Array) || modelId.length !== MODEL_ID_LENGTH) {
    throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, `model id must be ${MODEL_ID_LENGTH} bytes`)
  }
}

/** `/bly/node/<modelIdHex>/<peerIdB58>` as bytes (the DHT key of a node record). */
export function nodeRecordKey (modelId: Uint8Array, peerId: PeerId): Uint8Array {
  checkModelId(modelId)
  return utf8Encoder.encode(`${NODE_RECORD_KEY_PREFIX}${Buffer.from(modelId).toString('hex')}/${peerId.toString()}`)
}

export interface ParsedNodeRecordKey {
  modelId: Uint8Array
  peerId: PeerId
}

/** True when `key` is in the node-record part of the `bly` namespace. */
export function isNodeRecordKey (key: Uint8Array): boolean {
  return utf8Decoder.decode(key).startsWith(NODE_RECORD_KEY_PREFIX)
}

/** Parse a node-record key; throws ERR_RECORD_BAD_KEY on anything else. */
export function parseNodeRecordKey (key: Uint8Array): ParsedNodeRecordKey {
  const text = utf8Decoder.decode(key)
  if (!text.startsWith(NODE_RECORD_KEY_PREFIX)) {
    throw new RecordError(RecordErrorCode.BAD_KEY, `not a node record key: ${text.slice(0, 64)}`)
  }
  const parts = text.slice(NODE_RECORD_KEY_PREFIX.length).split('/')
  if (parts.length !== 2 || !HEX_MODEL_ID.test(parts[0])) {
    throw new RecordError(RecordErrorCode.BAD_KEY, `malformed node record key: ${text.slice(0, 128)}`)
  }
  let peerId: PeerId
  try {
    peerId = peerIdFromString(parts[1])
  } catch (err) {
    throw new RecordError(RecordErrorCode.BAD_KEY, `node record key names no valid peer id: ${parts[1].slice(0, 64)}`, { cause: err })
  }
  // only the canonical spelling of the peer id: one key per (model, peer)
  if (peerId.toString() !== parts[1]) {
    throw new RecordError(RecordErrorCode.BAD_KEY, 'node record key spells the peer id in a non-canonical form')
  }
  return { modelId: Uint8Array.from(Buffer.from(parts[0], 'hex')), peerId }
}

/** sha-256(LAYER_KEY_DOMAIN || modelId || uint32be(layer)) */
export function layerKeyDigest (modelId: Uint8Array, layer: number): Uint8Array {
  checkModelId(modelId)
  if (!Number.isInteger(layer) || layer < 0 || layer > 0xffffffff) {
    throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, `layer must be a uint32, got ${layer}`)
  }
  const index = new Uint8Array(4)
  new DataView(index.buffer).setUint32(0, layer, false)
  return new Uint8Array(createHash('sha256').update(utf8Encoder.encode(LAYER_KEY_DOMAIN)).update(modelId).update(index).digest())
}

/** The provider key (CIDv1, raw, sha2-256) under which every holder of `layer` of `modelId` provides. */
export function layerProviderKey (modelId: Uint8Array, layer: number): CID {
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, layerKeyDigest(modelId, layer)))
}
