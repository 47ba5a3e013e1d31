/**
 * The DHT validator and selector of the `bly` namespace. `/bly/node/...`
 * values must be signed node records naming the key's model and peer; any
 * other `/bly/...` key is rejected unless a validator for its second path
 * segment is passed in `extra` (e.g. `{ layer: fn }` for `/bly/layer/...`).
 * The selector prefers the highest sequence number, then the latest expiry.
 *
 * kad-dht stores any valid PUT_VALUE over what it holds, so a replayed older
 * record (e.g. the live record after its withdrawal tombstone) would replace
 * a newer one. The validator therefore remembers the highest seq it accepted
 * per node key (until that record expires, bounded in count) and rejects
 * lower ones as stale. A node never validates its own puts, so its own copy
 * can still be overwritten; readers query several peers and select the newest.
 */
import { decodeNodeRecord, decodeSignedNodeRecord } from '../../protocols/node-record.ts'
import { NODE_RECORD_LIMITS } from './constants.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import { parseNodeRecordKey } from './keys.ts'
import { verifyNodeRecord } from './verify.ts'
import type { NodeRecord } from '../../protocols/node-record.ts'
import type { SelectFn, ValidateFn } from '@libp2p/kad-dht'

export interface BlyDhtRecordsInit {
  /** accepted age past expiry (default NODE_RECORD_LIMITS.clockSkewMs) */
  clockSkewMs?: number
  /** farthest accepted expiry (default NODE_RECORD_LIMITS.maxTtlMs) */
  maxTtlMs?: number
  /** node keys whose newest accepted seq is remembered (default NODE_RECORD_LIMITS.replayCacheSize) */
  replayCacheSize?: number
  /** validators for other `/bly/<segment>/...` keys, by segment */
  extra?: Record<string, { validate: ValidateFn, select: SelectFn }>
  /** clock (tests) */
  now?(): number
}

export interface BlyDhtRecords {
  validator: ValidateFn
  selector: SelectFn
}

const utf8Decoder = new TextDecoder()

function segmentOf (key: Uint8Array): string {
  // keys look like /bly/<segment>/...
  return utf8Decoder.decode(key).split('/')[2] ?? ''
}

function tryDecode (value: Uint8Array): NodeRecord | undefined {
  try {
    return decodeNodeRecord(decodeSignedNodeRecord(value).record)
  } catch {
    return undefined
  }
}

/**
 * Index of the best node record: highest seq, then latest expiresAt, then the
 * earliest in the list. Undecodable values rank last.
 */
export function selectNodeRecord (key: Uint8Array, records: Uint8Array[]): number {
  let best = -1
  let bestRecord: NodeRecord | undefined
  for (let i = 0; i < records.length; i++) {
    const r = tryDecode(records[i])
    if (r == null) {
      continue
    }
    if (bestRecord == null || r.seq > bestRecord.seq || (r.seq === bestRecord.seq && r.expiresAt > bestRecord.expiresAt)) {
      best = i
      bestRecord = r
    }
  }
  return best === -1 ? 0 : best
}

/** The validator/selector pair to pass as `dhtValidator`/`dhtSelector` to createBlyLibp2p. */
export function createBlyDhtRecords (init: BlyDhtRecordsInit = {}): BlyDhtRecords {
  const clockSkewMs = init.clockSkewMs ?? NODE_RECORD_LIMITS.clockSkewMs
  const maxTtlMs = init.maxTtlMs ?? NODE_RECORD_LIMITS.maxTtlMs
  const now = init.now ?? Date.now
  const extra = init.extra ?? {}
  const cacheSize = init.replayCacheSize ?? NODE_RECORD_LIMITS.replayCacheSize
  /** node key -> newest accepted (seq, expiresAt); Map order is insertion order, oldest first */
  const newest = new Map<string, { seq: number, expiresAt: number }>()
  const checkFresh = (keyText: string, record: NodeRecord, at: number): void => {
    const prev = newest.get(keyText)
    if (prev != null && prev.expiresAt + clockSkewMs > at) {
      if (record.seq < prev.seq) {
        throw new RecordError(RecordErrorCode.STALE, `node record seq ${record.seq} is older than the accepted ${prev.seq}`)
      }
      if (record.seq === prev.seq) {
        return
      }
    }
    newest.delete(keyText)
    newest.set(keyText, { seq: record.seq, expiresAt: record.expiresAt })
    while (newest.size > cacheSize) {
      const oldest = newest.keys().next().value as string
      newest.delete(oldest)
    }
  }
  const validator: ValidateFn = async (key, value) => {
    const segment = segmentOf(key)
    if (segment === 'node') {
      const { modelId, peerId } = parseNodeRecordKey(key)
      const at = now()
      const { record } = await verifyNodeRecord(value, { peerId, modelId, now: at, clockSkewMs, maxTtlMs })
      checkFresh(utf8Decoder.decode(key), record, at)
      return
    }
    const other = Object.hasOwn(extra, segment) ? extra[segment] : undefined
    if (other == null) {
      throw new RecordError(RecordErrorCode.BAD_KEY, `no validator for DHT keys /bly/${segment.slice(0, 32)}/...`)
    }
    await other.validate(key, value)
  }
  const selector: SelectFn = (key, records) => {
    const segment = segmentOf(key)
    if (segment === 'node') {
      return selectNodeRecord(key, records)
    }
    const other = Object.hasOwn(extra, segment) ? extra[segment] : undefined
    return other == null ? 0 : other.select(key, records)
  }
  return { validator, selector }
}
