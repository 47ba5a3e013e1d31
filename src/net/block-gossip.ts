/**
 * Block gossip: one gossipsub topic per chain carrying encoded signed headers
 * (never payloads). Every received header is validated by the chain store
 * before gossipsub forwards it, decoded and hashed once: the store decodes it
 * (decodeBlock), gossip checks its chain against the topic (another chain's
 * block → Reject, ERR_WRONG_TOPIC), the store checks every other rule and
 * stores it (addDecoded): added → Accept (forwarded, payload fetched in
 * the background), duplicate or orphaned → Ignore (an orphan's missing
 * parents are fetched from the sender), any chain rule broken → Reject, which
 * lowers the sender's gossipsub score; a rule only a node holding certain
 * chunks can check (ERR_CHUNK_LENGTH) → Ignore, refused without penalty. At each gossipsub heartbeat, a peer
 * whose gossipsub score is at or below `banThreshold` (the graylist) is
 * banned through the shared PeerPenalties (hung up, refused for the cool-off).
 */
import { TopicValidatorResult as Result } from '@libp2p/gossipsub'
import { ChainError, ChainErrorCode } from '../chain/errors.ts'
import { ChainId } from '../chain/types.ts'
import { CHAIN_TOPICS, GOSSIP_SCORE_THRESHOLDS, MAX_GOSSIP_MESSAGE_BYTES } from './constants.ts'
import { NetError, NetErrorCode } from './errors.ts'
import { BanReason } from './peer-penalties.ts'
import type { BlockSync } from './block-sync.ts'
import type { PeerPenalties } from './peer-penalties.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'

/**
 * Rejections that depend on what this node already holds (a header naming
 * stored chunks at other lengths): the block is refused and not forwarded,
 * but the sender is not penalised (Ignore), since a relayer lacking those
 * chunks could not have known.
 */
const LOCAL_STATE_CODES: ReadonlySet<string> = new Set([ChainErrorCode.CHUNK_LENGTH])

/** Rejection code of a header published on the other chain's topic. */
export const WRONG_TOPIC = 'ERR_WRONG_TOPIC'

export interface BlockGossipInit {
  /** topic per chain (default CHAIN_TOPICS) */
  topics?: { A: string, B: string }
  maxMessageBytes?: number
  /** gossipsub score at or below which a peer is banned (default: the graylist threshold, GOSSIP_SCORE_THRESHOLDS) */
  banThreshold?: number
}

export interface BlockGossipComponents {
  pubsub: GossipSub
  store: ChainStoreApi
  /** logs as bly:net:block-gossip */
  logger: BlyComponentLogger
  /** when given: orphans' parents and added blocks' payloads are fetched through it */
  sync?: BlockSync
  /** when given: peers whose gossipsub score reaches `banThreshold` are banned through it */
  penalties?: PeerPenalties
}

export interface BlockGossipStats {
  accepted: number
  ignored: number
  rejected: number
  duplicate: number
  orphaned: number
  /** rejected messages by ChainError code (or ERR_WRONG_TOPIC) */
  rejectedByCode: Record<string, number>
  published: number
}

function chainOfTopic (topics: { A: string, B: string }, topic: string): ChainId | undefined {
  if (topic === topics.A) {
    return ChainId.A
  }
  if (topic === topics.B) {
    return ChainId.B
  }
  return undefined
}

export class BlockGossip {
  readonly topics: { A: string, B: string }
  readonly stats: BlockGossipStats
  private readonly pubsub: GossipSub
  private readonly store: ChainStoreApi
  private readonly sync?: BlockSync
  private readonly penalties?: PeerPenalties
  private readonly log: BlyLogger
  private readonly maxMessageBytes: number
  private readonly banThreshold: number
  private started: boolean

  constructor (components: BlockGossipComponents, init: BlockGossipInit = {}) {
    this.pubsub = components.pubsub
    this.store = components.store
    this.sync = components.sync
    this.penalties = components.penalties
    this.banThreshold = init.banThreshold ?? GOSSIP_SCORE_THRESHOLDS.graylistThreshold
    this.log = components.logger.forComponent('bly:net:block-gossip')
    this.topics = init.topics ?? { A: CHAIN_TOPICS.A, B: CHAIN_TOPICS.B }
    this.maxMessageBytes = init.maxMessageBytes ?? MAX_GOSSIP_MESSAGE_BYTES
    this.stats = { accepted: 0, ignored: 0, rejected: 0, duplicate: 0, orphaned: 0, rejectedByCode: {}, published: 0 }
    this.started = false
    this.onHeartbeat = this.onHeartbeat.bind(this)
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    for (const topic of [this.topics.A, this.topics.B]) {
      this.pubsub.topicValidators.set(topic, async (peer, message) => this.validate(peer, message))
      this.pubsub.subscribe(topic)
    }
    this.pubsub.addEventListener('gossipsub:heartbeat', this.onHeartbeat)
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    this.pubsub.removeEventListener('gossipsub:heartbeat', this.onHeartbeat)
    for (const topic of [this.topics.A, this.topics.B]) {
      this.pubsub.unsubscribe(topic)
      this.pubsub.topicValidators.delete(topic)
    }
  }

  /** Publish a stored block's signed header on its chain's topic. */
  async publish (id: Uint8Array): Promise<void> {
    if (!this.started) {
      throw new NetError(NetErrorCode.NOT_STARTED, 'block gossip is not started')
    }
    const [block, encoded] = await Promise.all([this.store.get(id), this.store.getEncoded(id)])
    if (block == null || encoded == null) {
      throw new NetError(NetErrorCode.INVALID_ARGUMENT, `block ${Buffer.from(id).toString('hex')} is not in the store`)
    }
    const topic = block.header.chain === ChainId.A ? this.topics.A : this.topics.B
    await this.pubsub.publish(topic, encoded)
    this.stats.published++
  }

  /** The gossipsub score this node gives `peerId` (undefined when the router does not expose scores). */
  peerScore (peerId: PeerId): number | undefined {
    const router = this.pubsub as GossipSub & { getScore?(id: string): number }
    return router.getScore?.(peerId.toString())
  }

  /** Ban the peers gossipsub scores at or below the ban threshold. */
  private onHeartbeat (): void {
    if (this.penalties == null) {
      return
    }
    for (const peerId of this.pubsub.getPeers()) {
      const score = this.peerScore(peerId)
      if (score != null && score <= this.banThreshold && !this.penalties.isBanned(peerId)) {
        this.log.info('gossip score of %p is %d: banning it', peerId, score)
        this.penalties.ban(peerId, BanReason.GossipScore)
      }
    }
  }

  private reject (code: string, peer: PeerId, message: string): Result {
    this.stats.rejected++
    this.stats.rejectedByCode[code] = (this.stats.rejectedByCode[code] ?? 0) + 1
    this.log('rejected a block from %p: %s', peer, message)
    return Result.Reject
  }

  private async validate (peer: PeerId, message: Message): Promise<Result> {
    const chain = chainOfTopic(this.topics, message.topic)
    if (chain == null) {
      return this.reject(WRONG_TOPIC, peer, `unknown topic ${message.topic}`)
    }
    if (message.data.length > this.maxMessageBytes) {
      return this.reject(ChainErrorCode.HEADER_TOO_LARGE, peer, `${message.data.length} bytes`)
    }
    let id: Uint8Array
    try {
      // decoded and hashed once, by the store: it validates the rest in addDecoded
      const block = this.store.decodeBlock(message.data)
      if (block.header.chain !== chain) {
        return this.reject(WRONG_TOPIC, peer, `a chain ${block.header.chain} block on ${message.topic}`)
      }
      id = block.id
      const outcome = await this.store.addDecoded(block)
      if (outcome === 'duplicate') {
        this.stats.duplicate++
        this.stats.ignored++
        return Result.Ignore
      }
      if (outcome === 'orphaned') {
        this.stats.orphaned++
        this.stats.ignored++
        this.sync?.fetchBlocks(peer, [id]).catch((err: Error) => {
          this.log.warn('fetching the parents of an orphan from %p failed - %e', peer, err)
        })
        return Result.Ignore
      }
    } catch (err) {
      if (err instanceof ChainError && LOCAL_STATE_CODES.has(err.code)) {
        // only a node holding the chunks can see this lie: an honest relayer that lacks them forwarded it in good faith
        this.stats.ignored++
        this.stats.rejectedByCode[err.code] = (this.stats.rejectedByCode[err.code] ?? 0) + 1
        this.log('refused a block from %p without penalty: %s', peer, err.message)
        return Result.Ignore
      }
      if (err instanceof ChainError) {
        return this.reject(err.code, peer, err.message)
      }
      // a local failure (disk, store stopped) is not the sender's fault
      this.log.error('validating a block from %p failed - %e', peer, err)
      this.stats.ignored++
      return Result.Ignore
    }
    this.stats.accepted++
    this.sync?.fetchWantedPayload(id, { peers: [peer] }).catch((err: Error) => {
      this.log.warn('fetching a payload announced by %p failed - %e', peer, err)
    })
    return Result.Accept
  }
}
