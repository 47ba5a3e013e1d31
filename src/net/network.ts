/**
 * The network layer of one daemon, composed: the libp2p node, block gossip
 * and block exchange over one chain store, sharing one table of peer
 * penalties. start() starts the node (when not running), then exchange, then
 * gossip; stop() undoes it in reverse.
 *
 * createBlyNetwork wires the penalties into libp2p: its connection gater
 * refuses banned peers (dials and inbound connections), and gossipsub's
 * application-specific score (P5) is the sync score, weighted
 * SYNC_SCORE_GOSSIP_WEIGHT, so a sync ban sits at gossipsub's graylist.
 */
import { silentLogger } from '../protocols/logger.ts'
import { BlockGossip } from './block-gossip.ts'
import { BlockSync } from './block-sync.ts'
import { SYNC_SCORE_GOSSIP_WEIGHT } from './constants.ts'
import { createBlyLibp2p } from './libp2p-node.ts'
import { PeerPenalties } from './peer-penalties.ts'
import type { BlockGossipInit } from './block-gossip.ts'
import type { BlockSyncInit } from './block-sync.ts'
import type { BlyLibp2p, BlyLibp2pInit } from './libp2p-node.ts'
import type { PeerPenaltiesInit } from './peer-penalties.ts'
import type { ChainStoreApi } from '../chain/types.ts'

export interface BlyNetworkInit extends Omit<BlyLibp2pInit, 'start' | 'gossip'> {
  /** the started chain store the network validates against and serves from */
  store: ChainStoreApi
  /** gossipsub overrides (BlyLibp2pInit.gossip) */
  gossipsub?: BlyLibp2pInit['gossip']
  blockGossip?: BlockGossipInit
  blockSync?: BlockSyncInit
  /** peer score weights, thresholds, decay and ban cool-off (PEER_PENALTY_DEFAULTS) */
  penalties?: PeerPenaltiesInit
}

export class BlyNetwork {
  readonly libp2p: BlyLibp2p
  readonly gossip: BlockGossip
  readonly sync: BlockSync
  readonly penalties: PeerPenalties

  /** Over an existing libp2p node; pass the `penalties` its gater and gossipsub score were built with, if any. */
  constructor (libp2p: BlyLibp2p, store: ChainStoreApi, init: Pick<BlyNetworkInit, 'blockGossip' | 'blockSync' | 'logger'> & { penalties?: PeerPenalties } = {}) {
    this.libp2p = libp2p
    this.penalties = init.penalties ?? new PeerPenalties()
    const logger = init.logger ?? silentLogger()
    this.sync = new BlockSync({ libp2p, store, penalties: this.penalties, logger }, init.blockSync)
    this.gossip = new BlockGossip({ pubsub: libp2p.services.pubsub, store, logger, sync: this.sync, penalties: this.penalties }, init.blockGossip)
  }

  async start (): Promise<void> {
    // the exchange protocol is registered before libp2p starts, so peers that
    // connect at once (bootstrap, keep-alive redials) see it in identify
    await this.sync.start()
    if (this.libp2p.status !== 'started') {
      await this.libp2p.start()
    }
    await this.gossip.start()
  }

  async stop (): Promise<void> {
    await this.gossip.stop()
    await this.sync.stop()
    await this.libp2p.stop()
  }

  /** Gossip a stored block's header (after ChainStore.createBlock). */
  async publish (id: Uint8Array): Promise<void> {
    await this.gossip.publish(id)
  }
}

/** Create and start the whole network layer over `init.store`. */
export async function createBlyNetwork (init: BlyNetworkInit): Promise<BlyNetwork> {
  const { store, blockGossip, blockSync, gossipsub, penalties: penaltiesInit, ...node } = init
  const penalties = new PeerPenalties(penaltiesInit)
  const libp2p = await createBlyLibp2p({
    ...node,
    connectionGater: penalties.connectionGater(node.connectionGater),
    gossip: {
      ...gossipsub,
      scoreParams: {
        appSpecificScore: (peerId: string) => penalties.score(peerId),
        appSpecificWeight: SYNC_SCORE_GOSSIP_WEIGHT,
        ...gossipsub?.scoreParams
      }
    },
    start: false
  })
  const network = new BlyNetwork(libp2p, store, { blockGossip, blockSync, penalties, logger: node.logger })
  try {
    await network.start()
  } catch (err) {
    await network.stop().catch(() => {})
    throw err
  }
  return network
}
