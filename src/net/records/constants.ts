/**
 * Defaults of node records, the announcer and the swarm view. Factories fill
 * missing `...Init` options from here; nothing else reads them at runtime.
 */

/** Direct request/response protocol: ask a peer for its live signed node record. */
export const RECORD_PROTOCOL = '/bly/record/1.0.0'

/** DHT key prefix of node records: `/bly/node/<modelIdHex>/<peerIdB58>`. */
export const NODE_RECORD_KEY_PREFIX = '/bly/node/'

/** Domain of the per-layer provider keys: sha-256(LAYER_KEY_DOMAIN || modelId || uint32be(layer)). */
export const LAYER_KEY_DOMAIN = 'bly/layer/v1'

/** Limits every validator applies to a node record. */
export const NODE_RECORD_LIMITS = {
  /** largest signed record accepted (envelope bytes) */
  maxRecordBytes: 4096,
  /** most multiaddrs in one record */
  maxAddrs: 16,
  /** longest multiaddr (bytes) */
  maxAddrBytes: 256,
  /** longest backend name (bytes of [a-z0-9._-]) */
  maxBackendBytes: 32,
  /** longest GPU adapter name (bytes of printable ASCII) */
  maxAdapterBytes: 128,
  /** decoder layers a span may reach (exclusive end bound) */
  maxLayers: 4096,
  /** how far in the future a record may expire */
  maxTtlMs: 60 * 60 * 1000,
  /**
   * how long past its expiry a record is still accepted for storage: covers
   * clock skew and lets a withdrawal tombstone (expiresAt = now) propagate.
   * Readers treat any record with expiresAt <= now as gone.
   */
  clockSkewMs: 30_000,
  /** node keys per validator whose newest accepted seq is remembered to refuse replays */
  replayCacheSize: 10_000
} as const

/** Announcer defaults. */
export const ANNOUNCER_DEFAULTS = {
  /** record lifetime */
  ttlMs: 10 * 60 * 1000,
  /** refresh this fraction of the TTL after the last successful announcement */
  refreshFraction: 1 / 3,
  /** first retry delay when an announcement reached no peer (doubles up to retryMaxMs, never past the refresh interval) */
  retryMs: 1000,
  /**
   * longest wait between those retries: a node that joined while its peers
   * were unreachable is announced within this long of one accepting (doubling
   * up to the refresh interval, 200 s, left a new holder unseen for minutes)
   */
  retryMaxMs: 30_000,
  /** re-send the per-layer provider records this often (the DHT keeps them 48 h) */
  reprovideIntervalMs: 30 * 60 * 1000,
  /** how long one put or provide round may take */
  announceTimeoutMs: 30_000,
  /** how long stop() waits for the withdrawal tombstone to reach peers */
  withdrawTimeoutMs: 5_000,
  /** provide queries run at once */
  provideConcurrency: 4,
  /** a record served over RECORD_PROTOCOL is re-signed with fresh stats when older than this */
  liveRecordMaxAgeMs: 1000,
  /** an inbound record request must arrive within this time */
  serverTimeoutMs: 5_000
} as const

/** Swarm view / discovery defaults. */
export const SWARM_DEFAULTS = {
  /** findProviders queries per layer run at once */
  queryConcurrency: 8,
  /** one findProviders query may take this long */
  queryTimeoutMs: 10_000,
  /** records fetched at once */
  fetchConcurrency: 16,
  /** one direct record request (dial included) or DHT get may take this long */
  fetchTimeoutMs: 5_000,
  /** one ping may take this long */
  pingTimeoutMs: 2_000,
  /** SwarmView: refresh the whole view this often */
  refreshIntervalMs: 30_000
} as const
