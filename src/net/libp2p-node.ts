/**
 * The libp2p 3 node of a blyd daemon: TCP, Noise, Yamux, identify, ping, a
 * private Kademlia DHT (/bly/kad/1.0.0), gossipsub tuned for block topics,
 * and bootstrap when a list is given. With `datastorePath` the peer store and
 * DHT records persist in LevelDB, so a restarted node redials the peers it
 * had (those tagged keep-alive by the block exchange).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import { DEFAULT_LISTEN, DHT_NAMESPACE, DHT_PROTOCOL, MUXER_MAX_EARLY_STREAMS, PING_MAX_OUTBOUND_STREAMS } from './constants.ts'
import { corkWrites } from './cork-writes.ts'
import { blockGossipOptions } from './gossip-config.ts'
import { identifyEarlyConnections } from './identify-early-connections.ts'
import { libp2pLogger } from './libp2p-logger.ts'
import { createNoiseCrypto } from './noise-crypto.ts'
import type { BlyComponentLogger } from '../protocols/logger.ts'
import type { GossipSub, GossipsubOpts } from '@libp2p/gossipsub'
import type { Identify, IdentifyPush } from '@libp2p/identify'
import type { ConnectionEncrypter, ConnectionGater, Libp2p, PeerDiscovery, PrivateKey, StreamMuxerFactory } from '@libp2p/interface'
import type { KadDHT, SelectFn, ValidateFn } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Libp2pOptions } from 'libp2p'

export interface BlyServices extends Record<string, unknown> {
  identify: Identify
  /** tells connected peers when this node starts speaking a protocol later (e.g. a stage server) */
  identifyPush: IdentifyPush
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export type BlyLibp2p = Libp2p<BlyServices>

export interface BlyLibp2pInit {
  /** the node's Ed25519 identity (the same key signs its blocks) */
  privateKey: PrivateKey
  /** multiaddrs to listen on (default all interfaces, OS-chosen TCP port) */
  listen?: string[]
  /** multiaddrs to announce instead of the listen addresses */
  announce?: string[]
  /** multiaddrs (with /p2p/<id>) to dial at start */
  bootstrap?: string[]
  /** LevelDB directory for the peer store and DHT records; in memory when absent */
  datastorePath?: string
  /** ban lists and the like */
  connectionGater?: ConnectionGater
  /** DHT record validator and selector for `/bly/...` keys (default: size-bounded, first record wins) */
  dhtValidator?: ValidateFn
  dhtSelector?: SelectFn
  /** keep private/loopback addresses in DHT answers (default true: LAN and test clusters) */
  dhtPrivateAddresses?: boolean
  /** gossipsub overrides */
  gossip?: Partial<GossipsubOpts>
  /** start the node (default true) */
  start?: boolean
  /** libp2p's own diagnostics go here, at debug (libp2p-logger.ts); default libp2p's (the DEBUG environment variable) */
  logger?: BlyComponentLogger
}

/** Largest DHT record value the default validator accepts. */
export const MAX_DHT_RECORD_BYTES = 64 * 1024

async function defaultDhtValidator (key: Uint8Array, value: Uint8Array): Promise<void> {
  if (value.length > MAX_DHT_RECORD_BYTES) {
    throw new Error(`DHT record of ${value.length} bytes exceeds ${MAX_DHT_RECORD_BYTES}`)
  }
}

function defaultDhtSelector (): number {
  return 0
}

/**
 * The connection encrypter blyd uses: Noise with node:crypto ChaCha20-Poly1305
 * on cached key objects, on sockets whose writes are batched per tick
 * (docs/transport.md has the measurements). Wire-compatible with stock Noise.
 */
export function blyConnectionEncrypter (): (components: any) => ConnectionEncrypter {
  return corkWrites(noise({ crypto: createNoiseCrypto() }))
}

/**
 * The stream muxer blyd uses: yamux defaults (docs/transport.md), except that
 * a burst of streams opened while the connection is still being upgraded
 * here is kept rather than reset with the connection (MUXER_MAX_EARLY_STREAMS).
 */
export function blyStreamMuxer (): (components: any) => StreamMuxerFactory {
  return yamux({ maxEarlyStreams: MUXER_MAX_EARLY_STREAMS })
}

/** Create (and by default start) a blyd libp2p node. */
export async function createBlyLibp2p (init: BlyLibp2pInit): Promise<BlyLibp2p> {
  let datastore: LevelDatastore | undefined
  if (init.datastorePath != null) {
    datastore = new LevelDatastore(init.datastorePath)
    await datastore.open()
  }
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.bootstrap != null && init.bootstrap.length > 0) {
    peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: 0 }))
  }
  const options: Libp2pOptions<BlyServices> = {
    privateKey: init.privateKey,
    start: false,
    ...(init.logger != null ? { logger: libp2pLogger(init.logger) } : {}),
    addresses: {
      listen: init.listen ?? DEFAULT_LISTEN,
      announce: init.announce ?? []
    },
    datastore,
    connectionGater: init.connectionGater,
    transports: [tcp()],
    connectionEncrypters: [blyConnectionEncrypter()],
    streamMuxers: [blyStreamMuxer()],
    peerDiscovery,
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      // see PING_MAX_OUTBOUND_STREAMS
      ping: ping({ maxOutboundStreams: PING_MAX_OUTBOUND_STREAMS }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: false,
        peerInfoMapper: init.dhtPrivateAddresses === false ? removePrivateAddressesMapper : passthroughMapper,
        validators: { [DHT_NAMESPACE]: init.dhtValidator ?? defaultDhtValidator },
        selectors: { [DHT_NAMESPACE]: init.dhtSelector ?? defaultDhtSelector }
      }),
      pubsub: gossipsub(blockGossipOptions(init.gossip))
    }
  }
  let node: BlyLibp2p
  try {
    node = await createLibp2p(options)
  } catch (err) {
    await datastore?.close()
    throw err
  }
  // bootstrap dials while the services start: see identify-early-connections.ts
  void identifyEarlyConnections(node, init.logger?.forComponent('bly:net:libp2p'))
  if (datastore != null) {
    const store = datastore
    // the datastore belongs to this node: close it once the node stopped
    node.addEventListener('stop', () => {
      Promise.resolve(store.close()).catch(() => {})
    }, { once: true })
  }
  if (init.start !== false) {
    try {
      await node.start()
    } catch (err) {
      await Promise.resolve(node.stop()).catch(() => {})
      throw err
    }
  }
  return node
}
