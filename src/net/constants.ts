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
  maxChunkAttempts: 4
} as const
