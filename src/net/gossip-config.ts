/**
 * Gossipsub options for bly's block topics. Blocks are rare (a few per
 * minute at most), so the mesh-delivery-rate penalties (P3/P3b) that suit
 * high-traffic topics would punish honest quiet peers: they are off. What
 * remains is time in mesh (quantum 1 s instead of libp2p's 1 ms), first
 * deliveries, and a steep penalty for invalid blocks (P4), so a peer that
 * publishes or forwards a block that breaks a chain rule drops below zero at
 * once and is pruned after a few. The score thresholds are GOSSIP_SCORE_THRESHOLDS:
 * a peer at the graylist is ignored by gossipsub and banned by blyd.
 */
import { createHash } from 'node:crypto'
import { CHAIN_TOPICS, GOSSIP_SCORE_THRESHOLDS, INVALID_BLOCK_PENALTY_WEIGHT, MAX_GOSSIP_MESSAGE_BYTES, TIME_IN_MESH_QUANTUM_MS } from './constants.ts'
import type { GossipsubOpts, Message } from '@libp2p/gossipsub'

type TopicScoreParams = NonNullable<GossipsubOpts['scoreParams']['topics']>[string]

/** Score parameters of one block topic. */
export function blockTopicScoreParams (): TopicScoreParams {
  return {
    topicWeight: 1,
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: TIME_IN_MESH_QUANTUM_MS,
    timeInMeshCap: 600,
    firstMessageDeliveriesWeight: 1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 10,
    meshMessageDeliveriesWeight: 0,
    meshMessageDeliveriesDecay: 0.5,
    meshMessageDeliveriesCap: 1,
    meshMessageDeliveriesThreshold: 1,
    meshMessageDeliveriesWindow: 10,
    meshMessageDeliveriesActivation: 5000,
    meshFailurePenaltyWeight: 0,
    meshFailurePenaltyDecay: 0.5,
    invalidMessageDeliveriesWeight: INVALID_BLOCK_PENALTY_WEIGHT,
    // per decay interval (1 s): half-life about 70 s
    invalidMessageDeliveriesDecay: 0.99
  }
}

/** Content-addressed message ids: the same header published twice is one message. */
export function blockMessageId (msg: Message): Uint8Array {
  return createHash('sha256').update(msg.data).digest()
}

/** The gossipsub options blyd runs with; `overrides` win. */
export function blockGossipOptions (overrides: Partial<GossipsubOpts> = {}): Partial<GossipsubOpts> {
  return {
    allowPublishToZeroTopicPeers: true,
    ignoreDuplicatePublishError: true,
    emitSelf: false,
    msgIdFn: blockMessageId,
    maxInboundDataLength: MAX_GOSSIP_MESSAGE_BYTES,
    ...overrides,
    scoreThresholds: { ...GOSSIP_SCORE_THRESHOLDS, ...overrides.scoreThresholds },
    scoreParams: {
      // test and LAN nodes share an IP: colocation is not sybil evidence here
      IPColocationFactorWeight: 0,
      ...overrides.scoreParams,
      topics: {
        [CHAIN_TOPICS.A]: blockTopicScoreParams(),
        [CHAIN_TOPICS.B]: blockTopicScoreParams(),
        ...overrides.scoreParams?.topics
      }
    }
  }
}
