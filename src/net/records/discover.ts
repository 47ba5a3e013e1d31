/**
 * Discovery of the live spans of one model: find the providers of every
 * layer key, fetch each provider's signed node record, drop the invalid,
 * expired and withdrawn ones, and measure RTT with ping.
 *
 * Records are fetched from the peer itself over `/bly/record/1.0.0` first:
 * one stream on a connection routing needs anyway (~1 ms), and the record is
 * re-signed with live stats (queue, free sessions) instead of being up to
 * TTL/3 old; it also shows the peer is reachable. When that fails (peer
 * gone, not serving records) the record comes from the DHT (a Kademlia
 * lookup), which is where withdrawal tombstones and unexpired records of
 * crashed peers live; such spans come back with `rttMs` undefined.
 */
import { SWARM_DEFAULTS } from './constants.ts'
import { dhtHasPeers } from './dht-peers.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import { layerProviderKey, nodeRecordKey } from './keys.ts'
import { requestNodeRecord } from './record-protocol.ts'
import { isLive, verifyNodeRecord } from './verify.ts'
import type { VerifiedNodeRecord } from './verify.ts'
import type { NodeRecord } from '../../protocols/node-record.ts'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * One node's live span of one model, as routing and `blyd peers` read it: the
 * record's fields (span, flags, backend, live stats, seq, expiry; see
 * NodeRecord), with the peer id and addresses decoded, and where it was seen.
 */
export interface LiveSpan extends Omit<NodeRecord, 'version' | 'peerId' | 'addrs' | 'modelId'> {
  peerId: PeerId
  /** addresses from the signed record */
  addrs: Multiaddr[]
  /** unix ms when this record was fetched and verified */
  lastSeen: number
  /** ping round trip (ms); undefined when the peer could not be pinged */
  rttMs?: number
  /** where the record came from */
  source: 'direct' | 'dht' | 'self'
}

export type SwarmLibp2p = Libp2p<{ dht: KadDHT, ping: Ping }>

export interface DiscoverSpansOptions {
  /** 32-byte model id */
  modelId: Uint8Array
  /** decoder layers of the model: layer keys 0..layers-1 are queried */
  layers: number
  signal?: AbortSignal
  /** include this node's own span when it announces the model (default true) */
  includeSelf?: boolean
  /** this node's live signed record (NodeAnnouncer.record); without it the own record is read from the DHT */
  localRecord?(): Promise<Uint8Array | undefined>
  /** ask peers directly over /bly/record/1.0.0 before the DHT (default true) */
  direct?: boolean
  queryConcurrency?: number
  queryTimeoutMs?: number
  fetchConcurrency?: number
  fetchTimeoutMs?: number
  pingTimeoutMs?: number
}

interface Candidate {
  peerId: PeerId
  multiaddrs: Multiaddr[]
}

/** Run `fn` over `items` with at most `concurrency` at once. */
async function eachLimited<T> (items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      await fn(items[next++])
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker))
}

function boundedSignal (signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs)
  return signal == null ? timeout : AbortSignal.any([signal, timeout])
}

function toSpan (v: VerifiedNodeRecord, lastSeen: number, rttMs: number | undefined, source: LiveSpan['source']): LiveSpan {
  const { version, peerId, addrs, modelId, ...fields } = v.record
  return { ...fields, peerId: v.peerId, addrs: v.multiaddrs, lastSeen, rttMs, source }
}

/** Every peer that provides at least one of the model's layer keys. */
export async function findLayerProviders (libp2p: SwarmLibp2p, options: DiscoverSpansOptions): Promise<Candidate[]> {
  const found = new Map<string, Candidate>()
  if (!dhtHasPeers(libp2p.services.dht)) {
    return []
  }
  const layers = Array.from({ length: options.layers }, (_, i) => i)
  await eachLimited(layers, options.queryConcurrency ?? SWARM_DEFAULTS.queryConcurrency, async (layer) => {
    if (options.signal?.aborted === true) {
      return
    }
    const signal = boundedSignal(options.signal, options.queryTimeoutMs ?? SWARM_DEFAULTS.queryTimeoutMs)
    try {
      for await (const event of libp2p.services.dht.findProviders(layerProviderKey(options.modelId, layer), { signal })) {
        if (event.name !== 'PROVIDER') {
          continue
        }
        for (const info of event.providers) {
          const id = info.id.toString()
          const known = found.get(id)
          if (known == null) {
            found.set(id, { peerId: info.id, multiaddrs: [...info.multiaddrs] })
          } else if (known.multiaddrs.length === 0) {
            known.multiaddrs = [...info.multiaddrs]
          }
        }
      }
    } catch {
      // a timed-out or failed query still contributes what it found
    }
  })
  return [...found.values()]
}

/** The verified record of `peerId` from the DHT, or undefined. */
async function recordFromDht (libp2p: SwarmLibp2p, peerId: PeerId, options: DiscoverSpansOptions): Promise<VerifiedNodeRecord | undefined> {
  const signal = boundedSignal(options.signal, options.fetchTimeoutMs ?? SWARM_DEFAULTS.fetchTimeoutMs)
  let value: Uint8Array | undefined
  if (!dhtHasPeers(libp2p.services.dht)) {
    return undefined
  }
  try {
    for await (const event of libp2p.services.dht.get(nodeRecordKey(options.modelId, peerId), { signal })) {
      if (event.name === 'VALUE') {
        value = event.value
      }
    }
  } catch {
    // an aborted query or a failed correction: keep what arrived
  }
  if (value == null) {
    return undefined
  }
  try {
    return await verifyNodeRecord(value, { peerId, modelId: options.modelId })
  } catch {
    return undefined
  }
}

/**
 * The peer's round-trip time as libp2p's connection monitor measured it on an
 * open connection (`conn.rtt`, refreshed by its heartbeat). No ping stream of
 * our own: ping allows few outbound streams per connection, and a monitor
 * heartbeat that finds the slot taken aborts the whole connection, every
 * stage stream on it included.
 */
function measuredRtt (libp2p: SwarmLibp2p, peerId: PeerId): number | undefined {
  return libp2p.getConnections(peerId).find(conn => conn.rtt != null && conn.rtt >= 0)?.rtt
}

/**
 * One ping, for a record that came from the DHT while the connection monitor
 * has no measurement yet (the direct path times its own request instead).
 * PING_MAX_OUTBOUND_STREAMS leaves the monitor's heartbeat its slot.
 */
async function pingRtt (libp2p: SwarmLibp2p, peerId: PeerId, options: DiscoverSpansOptions): Promise<number | undefined> {
  try {
    return await libp2p.services.ping.ping(peerId, { signal: boundedSignal(options.signal, options.pingTimeoutMs ?? SWARM_DEFAULTS.pingTimeoutMs) })
  } catch {
    return undefined
  }
}

/** Fetch and verify one candidate's record and take its RTT; undefined when it has no live record. */
export async function fetchSpan (libp2p: SwarmLibp2p, candidate: Candidate, options: DiscoverSpansOptions): Promise<LiveSpan | undefined> {
  const { peerId } = candidate
  if (peerId.equals(libp2p.peerId)) {
    let own: VerifiedNodeRecord | undefined
    if (options.localRecord != null) {
      const bytes = await options.localRecord().catch(() => undefined)
      own = bytes == null ? undefined : await verifyNodeRecord(bytes, { peerId, modelId: options.modelId }).catch(() => undefined)
    } else {
      own = await recordFromDht(libp2p, peerId, options)
    }
    return own != null && isLive(own.record) ? toSpan(own, Date.now(), 0, 'self') : undefined
  }
  if (options.direct !== false) {
    try {
      if (candidate.multiaddrs.length > 0) {
        await libp2p.peerStore.merge(peerId, { multiaddrs: candidate.multiaddrs })
      }
      const signal = boundedSignal(options.signal, options.fetchTimeoutMs ?? SWARM_DEFAULTS.fetchTimeoutMs)
      const asked = performance.now()
      const bytes = await requestNodeRecord(libp2p, peerId, options.modelId, { signal })
      // until the connection monitor's first heartbeat, the record request's
      // own round trip (one stream negotiation included) stands in for the RTT
      const requestMs = performance.now() - asked
      const verified = await verifyNodeRecord(bytes, { peerId, modelId: options.modelId })
      if (!isLive(verified.record)) {
        return undefined
      }
      return toSpan(verified, Date.now(), measuredRtt(libp2p, peerId) ?? requestMs, 'direct')
    } catch (err) {
      if (options.signal?.aborted === true) {
        throw err
      }
      // not reachable or not serving records: the DHT has the last word
    }
  }
  const stored = await recordFromDht(libp2p, peerId, options)
  if (stored == null || !isLive(stored.record)) {
    return undefined
  }
  return toSpan(stored, Date.now(), measuredRtt(libp2p, peerId) ?? await pingRtt(libp2p, peerId, options), 'dht')
}

/**
 * The live spans of `options.modelId`, sorted by start layer then peer id.
 * Spans outside [0, layers) are dropped.
 */
export async function discoverSpans (libp2p: SwarmLibp2p, options: DiscoverSpansOptions): Promise<LiveSpan[]> {
  if (!Number.isInteger(options.layers) || options.layers <= 0) {
    throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, `layers must be a positive integer, got ${options.layers}`)
  }
  const candidates = (await findLayerProviders(libp2p, options))
    .filter(c => !c.peerId.equals(libp2p.peerId))
  if (options.includeSelf !== false) {
    // this node's own record, when it announces the model (a local DHT read first)
    candidates.push({ peerId: libp2p.peerId, multiaddrs: [] })
  }
  const spans: LiveSpan[] = []
  await eachLimited(candidates, options.fetchConcurrency ?? SWARM_DEFAULTS.fetchConcurrency, async (candidate) => {
    const span = await fetchSpan(libp2p, candidate, options)
    if (span != null && span.start < options.layers) {
      spans.push(span)
    }
  })
  options.signal?.throwIfAborted()
  return spans.sort((a, b) => a.start - b.start || a.end - b.end || (a.peerId.toString() < b.peerId.toString() ? -1 : 1))
}
