/**
 * Peer scores of the block exchange: what lying over /bly/blocks/1.0.0 costs
 * a peer. A score starts at 0; each offence subtracts its weight
 * (SYNC_OFFENCE_WEIGHTS) and the score decays back toward 0 with a half-life.
 *
 * - At or below `avoidThreshold` the peer is avoided: block sync asks it for
 * headers or chunks only when no peer in good standing has them.
 * - At or below `banThreshold` (or when gossip asks, for a gossipsub score at
 * the graylist) the peer is banned for `banMs`: a `peer:banned` event fires
 * (block sync hangs up and drops the keep-alive tag) and `connectionGater()`
 * refuses the peer both ways. A banned score does not decay; when the ban
 * ends the score restarts at `avoidThreshold`, so a recidivist is banned
 * again after fewer offences than a newcomer.
 *
 * Ordering: `penalise` counts the offence, updates the score and, when the
 * threshold is crossed, marks the ban before dispatching `peer:banned`, so a
 * listener (and the gater) already sees the peer as banned. Scores live in
 * memory only: a restart forgives everyone. Time comes from `now()` (an init
 * option, for tests), never from timers: decay and ban expiry are computed when
 * a score is read.
 */
import { PEER_PENALTY_DEFAULTS, SYNC_OFFENCE_WEIGHTS } from './constants.ts'
import type { PeerPenaltyJson } from '../protocols/ipc-mesh.ts'
import type { ConnectionGater, PeerId } from '@libp2p/interface'

/** Kinds of block-sync offences (weights: SYNC_OFFENCE_WEIGHTS). */
export const SyncOffence = {
  ChunkCorrupt: 'chunk-corrupt',
  ChunkLength: 'chunk-length',
  ChunkSubstituted: 'chunk-substituted',
  InvalidHeader: 'invalid-header',
  MissingAncestry: 'missing-ancestry'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type SyncOffence = typeof SyncOffence[keyof typeof SyncOffence]

/** Why a peer was banned. */
export const BanReason = {
  /** its sync score reached the ban threshold */
  SyncScore: 'sync-score',
  /** its gossipsub score reached the graylist threshold */
  GossipScore: 'gossip-score'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type BanReason = typeof BanReason[keyof typeof BanReason]

export interface PeerPenaltiesInit {
  /** points each offence subtracts (default SYNC_OFFENCE_WEIGHTS) */
  weights?: Partial<Record<SyncOffence, number>>
  avoidThreshold?: number
  banThreshold?: number
  halfLifeMs?: number
  banMs?: number
  maxPeers?: number
  /** the clock (default Date.now) */
  now?(): number
}

export interface PeerBannedEvent {
  peerId: PeerId
  reason: BanReason
  /** unix ms the ban ends */
  until: number
}

export interface PeerPenaltyStats {
  /** offences counted, by kind */
  offences: Record<SyncOffence, number>
  /** bans imposed, by reason */
  bans: Record<BanReason, number>
  /** dials and inbound connections the gater refused because the peer was banned */
  refused: number
}

interface Entry {
  peerId: PeerId
  /** score at `at` */
  value: number
  at: number
  /** unix ms; 0 when not banned */
  bannedUntil: number
  offences: Partial<Record<SyncOffence, number>>
}

type Key = PeerId | string

function zeroOffences (): Record<SyncOffence, number> {
  return { 'chunk-corrupt': 0, 'chunk-length': 0, 'chunk-substituted': 0, 'invalid-header': 0, 'missing-ancestry': 0 }
}

export class PeerPenalties extends EventTarget {
  readonly stats: PeerPenaltyStats
  readonly avoidThreshold: number
  readonly banThreshold: number
  private readonly weights: Record<SyncOffence, number>
  private readonly halfLifeMs: number
  private readonly banMs: number
  private readonly maxPeers: number
  private readonly now: () => number
  private readonly entries: Map<string, Entry>

  constructor (init: PeerPenaltiesInit = {}) {
    super()
    this.weights = { ...SYNC_OFFENCE_WEIGHTS, ...init.weights }
    this.avoidThreshold = init.avoidThreshold ?? PEER_PENALTY_DEFAULTS.avoidThreshold
    this.banThreshold = init.banThreshold ?? PEER_PENALTY_DEFAULTS.banThreshold
    this.halfLifeMs = init.halfLifeMs ?? PEER_PENALTY_DEFAULTS.halfLifeMs
    this.banMs = init.banMs ?? PEER_PENALTY_DEFAULTS.banMs
    this.maxPeers = init.maxPeers ?? PEER_PENALTY_DEFAULTS.maxPeers
    this.now = init.now ?? Date.now
    if (!(this.banThreshold < this.avoidThreshold && this.avoidThreshold < 0)) {
      throw new RangeError(`thresholds must satisfy ban (${this.banThreshold}) < avoid (${this.avoidThreshold}) < 0`)
    }
    if (!(this.halfLifeMs > 0) || !(this.banMs >= 0)) {
      throw new RangeError('halfLifeMs must be positive and banMs not negative')
    }
    for (const [kind, weight] of Object.entries(this.weights)) {
      if (!Number.isFinite(weight) || weight < 0) {
        throw new RangeError(`weight of ${kind} must be a finite number >= 0, got ${weight}`)
      }
    }
    this.entries = new Map()
    this.stats = { offences: zeroOffences(), bans: { 'sync-score': 0, 'gossip-score': 0 }, refused: 0 }
  }

  /** The peer's score now (0 for a peer never penalised or long forgiven). */
  score (peer: Key): number {
    const entry = this.entries.get(peer.toString())
    return entry == null ? 0 : this.current(entry, this.now())
  }

  isBanned (peer: Key): boolean {
    const entry = this.entries.get(peer.toString())
    if (entry == null) {
      return false
    }
    this.current(entry, this.now())
    return entry.bannedUntil > 0
  }

  /** Banned, or scored at or below the avoid threshold. */
  isAvoided (peer: Key): boolean {
    return this.isBanned(peer) || this.score(peer) <= this.avoidThreshold
  }

  /** Count `offence` against `peerId`; bans it when its score reaches the ban threshold. Returns the new score. */
  penalise (peerId: PeerId, offence: SyncOffence): number {
    const now = this.now()
    const entry = this.entry(peerId, now)
    this.stats.offences[offence]++
    entry.offences[offence] = (entry.offences[offence] ?? 0) + 1
    if (entry.bannedUntil > 0) {
      // already banned (a late answer): counted, the ban stands
      return entry.value
    }
    entry.value -= this.weights[offence]
    if (entry.value <= this.banThreshold) {
      this.impose(entry, BanReason.SyncScore, now)
    }
    return entry.value
  }

  /** Ban `peerId` for the cool-off at once (e.g. a gossip score at the graylist); no-op when banned already. */
  ban (peerId: PeerId, reason: BanReason): void {
    const now = this.now()
    const entry = this.entry(peerId, now)
    if (entry.bannedUntil > 0) {
      return
    }
    entry.value = Math.min(entry.value, this.banThreshold)
    this.impose(entry, reason, now)
  }

  /**
   * A gater that refuses banned peers (dials and inbound connections, checked
   * once the remote's identity is known) and otherwise defers to `base`.
   */
  connectionGater (base: ConnectionGater = {}): ConnectionGater {
    const refuse = (peerId: PeerId): boolean => {
      if (this.isBanned(peerId)) {
        this.stats.refused++
        return true
      }
      return false
    }
    return {
      ...base,
      denyDialPeer: async (peerId) => refuse(peerId) || (await base.denyDialPeer?.(peerId)) === true,
      denyInboundEncryptedConnection: async (peerId, maConn) => refuse(peerId) || (await base.denyInboundEncryptedConnection?.(peerId, maConn)) === true,
      denyOutboundEncryptedConnection: async (peerId, maConn) => refuse(peerId) || (await base.denyOutboundEncryptedConnection?.(peerId, maConn)) === true
    }
  }

  /** Every peer with a non-zero score or a ban, worst first. */
  peers (): PeerPenaltyJson[] {
    const now = this.now()
    const out: PeerPenaltyJson[] = []
    for (const entry of this.entries.values()) {
      const score = this.current(entry, now)
      out.push({
        peerId: entry.peerId.toString(),
        score,
        banned: entry.bannedUntil > 0,
        ...(entry.bannedUntil > 0 ? { bannedUntil: entry.bannedUntil } : {}),
        offences: { ...entry.offences }
      })
    }
    return out.sort((a, b) => a.score - b.score)
  }

  private impose (entry: Entry, reason: BanReason, now: number): void {
    entry.bannedUntil = now + this.banMs
    entry.at = now
    this.stats.bans[reason]++
    this.dispatchEvent(new CustomEvent<PeerBannedEvent>('peer:banned', {
      detail: { peerId: entry.peerId, reason, until: entry.bannedUntil }
    }))
  }

  /** The entry's score at `now`, after applying decay and ending an expired ban. */
  private current (entry: Entry, now: number): number {
    if (entry.bannedUntil > 0) {
      if (now < entry.bannedUntil) {
        return entry.value
      }
      // the cool-off is over: back on probation
      entry.value = this.avoidThreshold
      entry.at = entry.bannedUntil
      entry.bannedUntil = 0
    }
    if (now > entry.at) {
      entry.value *= 0.5 ** ((now - entry.at) / this.halfLifeMs)
      entry.at = now
    }
    return entry.value
  }

  private entry (peerId: PeerId, now: number): Entry {
    const key = peerId.toString()
    let entry = this.entries.get(key)
    if (entry != null) {
      this.current(entry, now)
      return entry
    }
    if (this.entries.size >= this.maxPeers) {
      this.evict(now)
    }
    entry = { peerId, value: 0, at: now, bannedUntil: 0, offences: {} }
    this.entries.set(key, entry)
    return entry
  }

  /** Make room: forgiven peers first, then the mildest scores, then the oldest bans. */
  private evict (now: number): void {
    for (const [key, entry] of this.entries) {
      if (this.current(entry, now) > -1 && entry.bannedUntil === 0) {
        this.entries.delete(key)
      }
    }
    if (this.entries.size < this.maxPeers) {
      return
    }
    const byMildest = [...this.entries].sort(([, a], [, b]) => {
      if ((a.bannedUntil > 0) !== (b.bannedUntil > 0)) {
        return a.bannedUntil > 0 ? 1 : -1
      }
      return a.bannedUntil > 0 ? a.bannedUntil - b.bannedUntil : b.value - a.value
    })
    for (const [key] of byMildest.slice(0, this.entries.size - this.maxPeers + 1)) {
      this.entries.delete(key)
    }
  }
}
