/**
 * Defaults of the network layer. Every value here can be overridden through
 * the matching `...Init` option; nothing reads these at runtime except the
 * factories that fill in missing options.
 */

/** Private Kademlia DHT protocol: bly nodes never join the public IPFS DHT. */
export const DHT_PROTOCOL = '/bly/kad/1.0.0'

/** DHT record namespace: keys look like `/bly/...` and are validated by `bly` validators. */
export const DHT_NAMESPACE = 'bly'

/**
 * Outbound ping streams allowed per connection. libp2p's connection monitor
 * pings every connection on /ipfs/ping/1.0.0 and ABORTS the connection when
 * its heartbeat fails, which it does when the slot is taken (default 1) by
 * anyone else's ping. 2 leaves the heartbeat its slot (the remote accepts 2).
 */
export const PING_MAX_OUTBOUND_STREAMS = 2

/**
 * Streams a connection's muxer holds for the node before its upgrade has
 * finished (libp2p: "early streams"). A remote sees the connection open one
 * step before this end does and may open streams at once: past this limit
 * libp2p resets the WHOLE connection and leaves the remote a connection that
 * looks open but whose muxer is closed. The libp2p default, 10, was passed by
 * a mesh client opening one stage session per generation (issue 5). A stage
 * takes 64 streams per protocol per connection on each of its two protocols,
 * plus libp2p's own (identify, DHT, ping, gossip); yamux caps inbound streams
 * per connection at 1000 in any case.
 */
export const MUXER_MAX_EARLY_STREAMS = 256

/** Default listen address: every interface, an OS-chosen port. */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0']

/** Gossipsub topic per chain: the encoded signed header of each new block. */
export const CHAIN_TOPICS = {
  A: '/bly/chain/A/1.0.0',
  B: '/bly/chain/B/1.0.0'
} as const

/** Request/response protocol for headers, tips and payload chunks. */
export const BLOCK_SYNC_PROTOCOL = '/bly/blocks/1.0.0'

/**
 * Largest gossiped message we accept. Encoded headers are small (a layer's
 * header with a few hundred chunk hashes is ~10 KiB); gossipsub's outbound
 * cap is ~4 MiB, so never set a receiver below what senders may send.
 */
export const MAX_GOSSIP_MESSAGE_BYTES = 4 * 1024 * 1024

/** gossipsub score: how much one rejected (invalid) block costs its sender, squared per count. */
export const INVALID_BLOCK_PENALTY_WEIGHT = -10

/** gossipsub time-in-mesh quantum: one score unit per second in the mesh (libp2p default is 1 ms). */
export const TIME_IN_MESH_QUANTUM_MS = 1000

/**
 * Prefix of the peer-store tag that makes libp2p redial a peer after a
 * restart (libp2p reconnects peers whose tags start with `keep-alive`).
 */
export const KEEP_ALIVE_TAG = 'keep-alive-bly'

/** Block exchange defaults. */
export const BLOCK_SYNC_DEFAULTS = {
  /** one response frame: the largest chunk (16 MiB, MAX_CHUNK_SIZE) plus its envelope */
  maxMessageBytes: 17 * 1024 * 1024,
  /** one request frame: 1024 ids of 32 bytes plus envelope */
  maxRequestBytes: 64 * 1024,
  /** how long one request may wait for its response */
  requestTimeoutMs: 30_000,
  /** close a request stream that carried nothing for this long */
  idleTimeoutMs: 60_000,
  /** requests one peer may have unanswered on our server at once; more get BUSY */
  maxInboundRequestsPerPeer: 32,
  /** requests (chunk requests included) we keep in flight to one peer */
  maxOutboundRequestsPerPeer: 8,
  /** ids asked for in one GetHeaders request */
  headersPerRequest: 128,
  /** headers fetched in one catch-up walk before giving up (bounds memory) */
  maxBlocksPerSync: 100_000,
  /** payload chunks held in memory at once across all peers (in-flight + unverified) */
  maxInflightChunks: 8,
  /** how many different peers one chunk is tried from before the fetch gives up */
  maxChunkAttempts: 4,
  /**
   * a catch-up with a peer that failed (timeout, reset stream, BUSY) is tried
   * again after syncRetryBaseMs x 2^(failures - 1), capped at syncRetryMaxMs, while the
   * peer stays connected and unbanned, at most maxSyncRetries times in a row
   * (1+2+4+8+16+30+30+30 s, about 2 min of trying); a success or a reconnect starts the count again
   */
  syncRetryBaseMs: 1000,
  syncRetryMaxMs: 30_000,
  maxSyncRetries: 8
} as const

/**
 * What each block-sync offence costs a peer's sync score (points subtracted
 * from a score that starts at 0). An honest blyd never commits any of these:
 * it hash-checks every chunk before serving it and only advertises blocks
 * whose ancestry it stores, so each one is evidence of a lying or broken peer.
 */
export const SYNC_OFFENCE_WEIGHTS = {
  /** a chunk of the right length that hashes to none of the block's chunks (a flipped bit) */
  'chunk-corrupt': 40,
  /** a chunk of the wrong length (an extra or a missing byte) */
  'chunk-length': 40,
  /** the bytes of another chunk of the same block */
  'chunk-substituted': 40,
  /** a header over sync that fails validation, is not the one asked for, or a headers answer of the wrong count (once per walk) */
  'invalid-header': 30,
  /** a tip it advertised, a block it gossiped, or a header it served whose ancestry it then says it lacks (once per walk) */
  'missing-ancestry': 30
} as const

/** Peer sync-score defaults (PeerPenaltiesInit). */
export const PEER_PENALTY_DEFAULTS = {
  /** at or below: asked for headers/chunks only when no peer in good standing has them (one chunk lie) */
  avoidThreshold: -20,
  /** at or below: banned, i.e. hung up and refused both ways for `banMs` (three chunk lies or four lying walks within minutes) */
  banThreshold: -100,
  /** a score halves back toward 0 every this long */
  halfLifeMs: 10 * 60_000,
  /** cool-off of a ban; afterwards the score restarts at `avoidThreshold` */
  banMs: 30 * 60_000,
  /** peers whose scores are kept (forgiven ones are dropped first) */
  maxPeers: 4096
} as const

/**
 * gossipsub score thresholds. A peer at or below `graylistThreshold` is
 * ignored by gossipsub and banned by blyd like a sync liar (two invalid
 * blocks from a fresh peer: P4 is -10 x count²). Below `gossipThreshold` no
 * gossip goes to or comes from the peer; below `publishThreshold` we do not
 * publish to it.
 */
export const GOSSIP_SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -20,
  graylistThreshold: -35,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 20
} as const

/**
 * gossipsub P5 weight of the sync score (appSpecificScore): a peer at the
 * sync ban threshold (-100) sits at gossipsub's graylist threshold (-35), so
 * gossip and sync agree; one chunk lie (-40) drops it below gossipThreshold.
 */
export const SYNC_SCORE_GOSSIP_WEIGHT = 0.35

/** Bounds of fetching the missing parents of orphans (OrphanFetcherInit). */
export const ORPHAN_FETCH_DEFAULTS = {
  /** parents asked for at once (one GetHeaders walk each) */
  maxOutstanding: 4,
  /** tries per missing parent, each from another peer while untried ones remain; then it is abandoned */
  maxAttempts: 5,
  /** headers one walk may fetch behind a missing parent; deeper gaps are left to catch-up sync */
  maxDepth: 1024,
  /** wait before the first try, so the walk gossip or sync started towards the announcing peer can finish first */
  graceMs: 500,
  /** backoff after a failed try: base x 2^(tries - 1), capped */
  retryBaseMs: 1000,
  retryMaxMs: 30_000,
  /** missing parents tracked at once (the orphan pool bounds them too) */
  maxTracked: 1024
} as const
