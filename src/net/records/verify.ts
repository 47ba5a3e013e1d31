/**
 * Full verification of a signed node record: structure, signature, sane
 * ranges, expiry window, and (when given) the peer and model it must name.
 * The DHT validator, the direct record fetch and the announcer's self-check
 * all go through here.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { openSignedNodeRecord } from '../../protocols/node-record.ts'
import { equalBytes } from '../../protocols/pb-wire.ts'
import { NODE_RECORD_LIMITS } from './constants.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import type { NodeRecord } from '../../protocols/node-record.ts'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface VerifyNodeRecordOptions {
  /** the peer the record must name (DHT key, or the peer we asked) */
  peerId?: PeerId
  /** the model the record must name */
  modelId?: Uint8Array
  /** current time (unix ms); default Date.now() */
  now?: number
  /** accepted age past expiry (default NODE_RECORD_LIMITS.clockSkewMs) */
  clockSkewMs?: number
  /** farthest accepted expiry from now (default NODE_RECORD_LIMITS.maxTtlMs) */
  maxTtlMs?: number
  /** exclusive upper bound of `end` (default NODE_RECORD_LIMITS.maxLayers) */
  maxLayers?: number
}

export interface VerifiedNodeRecord {
  record: NodeRecord
  peerId: PeerId
  multiaddrs: Multiaddr[]
  /** the signed envelope bytes */
  bytes: Uint8Array
}

const BACKEND_NAME = /^[a-z0-9._-]+$/
/** printable ASCII, no leading or trailing space (empty = none said) */
const ADAPTER_NAME = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/

function rangeError (message: string): RecordError {
  return new RecordError(RecordErrorCode.RANGE, message)
}

/** Check everything but the signature's freshness rules on an opened record. */
function checkRanges (record: NodeRecord, maxLayers: number): Multiaddr[] {
  if (record.end <= record.start) {
    throw rangeError(`empty or inverted span [${record.start}, ${record.end})`)
  }
  if (record.end > maxLayers) {
    throw rangeError(`span end ${record.end} exceeds ${maxLayers} layers`)
  }
  if (record.addrs.length > NODE_RECORD_LIMITS.maxAddrs) {
    throw rangeError(`${record.addrs.length} addresses exceed ${NODE_RECORD_LIMITS.maxAddrs}`)
  }
  if (record.backend.length > NODE_RECORD_LIMITS.maxBackendBytes || !BACKEND_NAME.test(record.backend)) {
    throw rangeError(`bad backend name ${JSON.stringify(record.backend.slice(0, 40))}`)
  }
  if (record.adapter != null && (record.adapter.length > NODE_RECORD_LIMITS.maxAdapterBytes || !ADAPTER_NAME.test(record.adapter))) {
    throw rangeError(`bad adapter name ${JSON.stringify(record.adapter.slice(0, 40))}`)
  }
  if (record.seq === 0) {
    throw rangeError('sequence number 0')
  }
  return record.addrs.map((bytes, i) => {
    if (bytes.length > NODE_RECORD_LIMITS.maxAddrBytes) {
      throw rangeError(`address ${i} is ${bytes.length} bytes, more than ${NODE_RECORD_LIMITS.maxAddrBytes}`)
    }
    try {
      return multiaddr(bytes)
    } catch (err) {
      throw new RecordError(RecordErrorCode.RANGE, `address ${i} is not a multiaddr`, { cause: err })
    }
  })
}

/**
 * Verify signed node record bytes. Accepts records up to `clockSkewMs` past
 * their expiry (so withdrawal tombstones propagate); use `isLive` to decide
 * whether a verified record still counts.
 */
export async function verifyNodeRecord (bytes: Uint8Array, options: VerifyNodeRecordOptions = {}): Promise<VerifiedNodeRecord> {
  if (!(bytes instanceof Uint8Array)) {
    throw new RecordError(RecordErrorCode.ENCODING, 'node record is not bytes')
  }
  if (bytes.length > NODE_RECORD_LIMITS.maxRecordBytes) {
    throw new RecordError(RecordErrorCode.ENCODING, `node record of ${bytes.length} bytes exceeds ${NODE_RECORD_LIMITS.maxRecordBytes}`)
  }
  const { record, peerId } = await openSignedNodeRecord(bytes)
  const multiaddrs = checkRanges(record, options.maxLayers ?? NODE_RECORD_LIMITS.maxLayers)
  const now = options.now ?? Date.now()
  const skew = options.clockSkewMs ?? NODE_RECORD_LIMITS.clockSkewMs
  if (record.expiresAt + skew <= now) {
    throw new RecordError(RecordErrorCode.EXPIRED, `node record of ${peerId.toString()} expired at ${new Date(record.expiresAt).toISOString()}`)
  }
  const maxTtl = options.maxTtlMs ?? NODE_RECORD_LIMITS.maxTtlMs
  if (record.expiresAt > now + maxTtl + skew) {
    throw rangeError(`node record expires ${record.expiresAt - now} ms ahead, more than ${maxTtl} ms`)
  }
  if (options.peerId != null && !options.peerId.equals(peerId)) {
    throw new RecordError(RecordErrorCode.MISMATCH, `node record names ${peerId.toString()}, expected ${options.peerId.toString()}`)
  }
  if (options.modelId != null && !equalBytes(options.modelId, record.modelId)) {
    throw new RecordError(RecordErrorCode.MISMATCH, `node record of ${peerId.toString()} names another model`)
  }
  return { record, peerId, multiaddrs, bytes }
}

/** A record counts only strictly before its expiry; a withdrawal tombstone never does. */
export function isLive (record: NodeRecord, now: number = Date.now()): boolean {
  return record.expiresAt > now
}
