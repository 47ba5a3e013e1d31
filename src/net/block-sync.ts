/**
 * Block exchange over /bly/blocks/1.0.0: serves the local chain to peers and
 * catches up from them. On every new peer that speaks the protocol it asks
 * for the peer's tips, walks parents back until it reaches blocks it has,
 * adds what it fetched parents-first, then fetches wanted payloads chunk by
 * chunk from every peer that has them (each chunk verified by the store's
 * putChunk, a bounded number in memory, what is stored stays stored).
 *
 * Lies cost: a peer that serves a chunk whose bytes are not the chunk, a
 * header that fails validation, or an advertised block whose ancestry it then
 * lacks is penalised (PeerPenalties). An avoided peer is asked only when no
 * peer in good standing can serve; a banned one is hung up on, loses its
 * keep-alive tag and is never asked. Orphans' missing parents are fetched
 * from peers within bounds (OrphanFetcher).
 */
import { blockId } from '../chain/block-crypto.ts'
import { ChainError, ChainErrorCode } from '../chain/errors.ts'
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { HaveStatus } from '../protocols/block-sync.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { chunkOffence } from './chunk-offence.ts'
import { BLOCK_SYNC_DEFAULTS, BLOCK_SYNC_PROTOCOL, KEEP_ALIVE_TAG } from './constants.ts'
import { NetError, NetErrorCode } from './errors.ts'
import { Limiter } from './limiter.ts'
import { OrphanFetcher } from './orphan-fetcher.ts'
import { PeerPenalties, SyncOffence } from './peer-penalties.ts'
import { SyncClient } from './sync-client.ts'
import { serveSyncStream } from './sync-server.ts'
import type { OrphanFetcherInit } from './orphan-fetcher.ts'
import type { BanReason, PeerBannedEvent } from './peer-penalties.ts'
import type { ChainStoreApi, StoredBlock } from '../chain/types.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { IdentifyResult, Libp2p, PeerId } from '@libp2p/interface'

export interface BlockSyncInit {
  protocol?: string
  maxMessageBytes?: number
  requestTimeoutMs?: number
  idleTimeoutMs?: number
  maxInboundRequestsPerPeer?: number
  maxOutboundRequestsPerPeer?: number
  headersPerRequest?: number
  maxBlocksPerSync?: number
  maxInflightChunks?: number
  maxChunkAttempts?: number
  /** first wait before a failed catch-up with a peer is tried again (doubles per failure; BLOCK_SYNC_DEFAULTS) */
  syncRetryBaseMs?: number
  /** longest wait between tries of a failing catch-up */
  syncRetryMaxMs?: number
  /** failed catch-ups with one peer retried in a row before giving up until it reconnects or is identified again */
  maxSyncRetries?: number
  /** catch up with every peer that connects and speaks the protocol (default true) */
  syncOnConnect?: boolean
  /** which blocks' payloads to fetch after headers arrive (default: every block) */
  wantPayload?(block: StoredBlock): boolean
  /** bounds of fetching orphans' missing parents (ORPHAN_FETCH_DEFAULTS) */
  orphans?: OrphanFetcherInit
}

/**
 * The chain store as block sync uses it. ChainStore's optional extras:
 * `missingChunks` saves reading present chunks; `missingParents` and the
 * `orphan` event (dispatched when a block is parked) drive the orphan fetcher.
 */
export type SyncStore = ChainStoreApi & {
  missingChunks?(id: Uint8Array): Promise<number[]>
  missingParents?(): Uint8Array[]
  addEventListener?(type: 'orphan', listener: () => void): void
  removeEventListener?(type: 'orphan', listener: () => void): void
}

export interface BlockSyncComponents {
  libp2p: Libp2p
  store: SyncStore
  /** peer scores shared with gossip and the connection gater (default: a private one) */
  penalties?: PeerPenalties
  /** logs as bly:net:block-sync (the orphan fetcher and the server as its scopes) */
  logger: BlyComponentLogger
}

/** What one catch-up with one peer did. */
export interface SyncResult {
  /** headers received */
  fetched: number
  added: number
  duplicate: number
  orphaned: number
  /** headers the store refused (by ChainError code) */
  rejected: Record<string, number>
  /** ids the peer did not have although its own blocks point at them */
  notFound: number
  /** payloads completed */
  payloads: number
  /** payloads that could not be completed (chunks stay stored for a later try) */
  payloadErrors: number
  /** payloads that can never complete here: the header names stored chunks at other lengths (ERR_CHUNK_LENGTH) */
  unsatisfiable: number
}

export interface BlockSyncStats {
  syncs: number
  syncErrors: number
  /** catch-ups started again after a failed one (the backoff's timers that fired) */
  syncRetries: number
  blocksAdded: number
  chunksFetched: number
  chunkErrors: number
  served: Record<string, number>
  /** offences counted against peers, by kind (chunk-corrupt, chunk-length, chunk-substituted, invalid-header, missing-ancestry) */
  offences: Record<SyncOffence, number>
  /** peers banned, by reason (sync-score, gossip-score) */
  bans: Record<BanReason, number>
  /** connections and dials refused to banned peers */
  refused: number
  /** walks started for orphans' missing parents */
  orphanRequests: number
  /** missing parents fetched */
  orphanParentsFetched: number
  /** missing parents given up on after the try bound */
  orphanParentsAbandoned: number
}

type Counters = Pick<BlockSyncStats, 'syncs' | 'syncErrors' | 'syncRetries' | 'blocksAdded' | 'chunksFetched' | 'chunkErrors' | 'served'>

interface WalkOptions {
  /** the peer itself announced `ids` (its tips, a block it gossiped): its not having them is an offence */
  advertised: boolean
  /** headers the walk may fetch */
  maxBlocks: number
}

/** Rejection codes that do not depend on what the local store holds: a peer sending such a header lied. */
const HEADER_OFFENCE_CODES = new Set<string>([
  ChainErrorCode.BLOCK_ENCODING,
  ChainErrorCode.BLOCK_ID,
  ChainErrorCode.BLOCK_SIGNATURE,
  ChainErrorCode.BLOCK_TYPE,
  ChainErrorCode.HEADER_TOO_LARGE,
  ChainErrorCode.TOO_MANY_PARENTS,
  ChainErrorCode.PAYLOAD_TOO_LARGE,
  ChainErrorCode.PAYLOAD_SIZE
])

interface FetchedHeader {
  id: Uint8Array
  key: string
  bytes: Uint8Array
  parents: Uint8Array[]
}

function hex (id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')
}

function emptyResult (): SyncResult {
  return { fetched: 0, added: 0, duplicate: 0, orphaned: 0, rejected: {}, notFound: 0, payloads: 0, payloadErrors: 0, unsatisfiable: 0 }
}

/** Decode just enough of an encoded signed header to walk the DAG: its id and parents. */
function parseSignedHeader (bytes: Uint8Array): { id: Uint8Array, parents: Uint8Array[] } {
  const { header } = decodeSignedBlockHeader(bytes)
  return { id: blockId(header), parents: decodeBlockHeader(header).parents }
}

/** Parents before children among `fetched` (Kahn); parents outside the set are already stored. */
function topologicalOrder (fetched: Map<string, FetchedHeader>): FetchedHeader[] {
  const pending = new Map<string, number>()
  const children = new Map<string, string[]>()
  for (const item of fetched.values()) {
    let n = 0
    for (const parent of item.parents) {
      const p = hex(parent)
      if (fetched.has(p)) {
        n++
        const list = children.get(p) ?? []
        list.push(item.key)
        children.set(p, list)
      }
    }
    pending.set(item.key, n)
  }
  const ready = [...fetched.values()].filter(item => pending.get(item.key) === 0)
  const order: FetchedHeader[] = []
  while (ready.length > 0) {
    const item = ready.pop() as FetchedHeader
    order.push(item)
    for (const child of children.get(item.key) ?? []) {
      const left = (pending.get(child) ?? 0) - 1
      pending.set(child, left)
      if (left === 0) {
        ready.push(fetched.get(child) as FetchedHeader)
      }
    }
  }
  // a cycle cannot occur (ids are hashes of headers naming their parents);
  // anything left over is simply not added
  return order
}

export class BlockSync {
  readonly protocol: string
  readonly penalties: PeerPenalties
  private readonly counters: Counters
  private readonly libp2p: Libp2p
  private readonly store: SyncStore
  private readonly orphans: OrphanFetcher
  private readonly init: Required<Omit<BlockSyncInit, 'wantPayload' | 'protocol' | 'orphans'>> & Pick<BlockSyncInit, 'wantPayload'>
  private readonly log: BlyLogger
  private readonly serverLog: BlyLogger
  private readonly clients: Map<string, SyncClient>
  private readonly peerSyncs: Map<string, { running: Promise<void>, again: boolean }>
  /** per peer: failed catch-ups in a row and the timer of the next try */
  private readonly syncRetries: Map<string, { failures: number, timer?: ReturnType<typeof setTimeout> }>
  private readonly payloadFetches: Map<string, Promise<void>>
  private readonly blockFetches: Map<string, Promise<SyncResult>>
  private chunkLimiter: Limiter
  private controller?: AbortController

  constructor (components: BlockSyncComponents, init: BlockSyncInit = {}) {
    this.libp2p = components.libp2p
    this.store = components.store
    this.protocol = init.protocol ?? BLOCK_SYNC_PROTOCOL
    this.init = {
      maxMessageBytes: init.maxMessageBytes ?? BLOCK_SYNC_DEFAULTS.maxMessageBytes,
      requestTimeoutMs: init.requestTimeoutMs ?? BLOCK_SYNC_DEFAULTS.requestTimeoutMs,
      idleTimeoutMs: init.idleTimeoutMs ?? BLOCK_SYNC_DEFAULTS.idleTimeoutMs,
      maxInboundRequestsPerPeer: init.maxInboundRequestsPerPeer ?? BLOCK_SYNC_DEFAULTS.maxInboundRequestsPerPeer,
      maxOutboundRequestsPerPeer: init.maxOutboundRequestsPerPeer ?? BLOCK_SYNC_DEFAULTS.maxOutboundRequestsPerPeer,
      headersPerRequest: init.headersPerRequest ?? BLOCK_SYNC_DEFAULTS.headersPerRequest,
      maxBlocksPerSync: init.maxBlocksPerSync ?? BLOCK_SYNC_DEFAULTS.maxBlocksPerSync,
      maxInflightChunks: init.maxInflightChunks ?? BLOCK_SYNC_DEFAULTS.maxInflightChunks,
      maxChunkAttempts: init.maxChunkAttempts ?? BLOCK_SYNC_DEFAULTS.maxChunkAttempts,
      syncRetryBaseMs: init.syncRetryBaseMs ?? BLOCK_SYNC_DEFAULTS.syncRetryBaseMs,
      syncRetryMaxMs: init.syncRetryMaxMs ?? BLOCK_SYNC_DEFAULTS.syncRetryMaxMs,
      maxSyncRetries: init.maxSyncRetries ?? BLOCK_SYNC_DEFAULTS.maxSyncRetries,
      syncOnConnect: init.syncOnConnect ?? true,
      wantPayload: init.wantPayload
    }
    this.log = components.logger.forComponent('bly:net:block-sync')
    this.serverLog = this.log.newScope('server')
    this.penalties = components.penalties ?? new PeerPenalties()
    this.counters = { syncs: 0, syncErrors: 0, syncRetries: 0, blocksAdded: 0, chunksFetched: 0, chunkErrors: 0, served: {} }
    this.orphans = new OrphanFetcher({
      missingParents: () => this.store.missingParents?.() ?? [],
      peers: async () => this.rankedSyncPeers(),
      fetch: async (peerId, id, maxDepth, signal) => this.fetchParent(peerId, id, maxDepth, signal),
      log: this.log.newScope('orphans')
    }, init.orphans)
    this.clients = new Map()
    this.peerSyncs = new Map()
    this.syncRetries = new Map()
    this.payloadFetches = new Map()
    this.blockFetches = new Map()
    this.chunkLimiter = new Limiter(this.init.maxInflightChunks)
    this.onIdentify = this.onIdentify.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
    this.onBanned = this.onBanned.bind(this)
    this.onOrphan = this.onOrphan.bind(this)
  }

  /** Counters for status and metrics (a snapshot). */
  get stats (): BlockSyncStats {
    const p = this.penalties.stats
    const o = this.orphans.stats
    return {
      ...this.counters,
      served: { ...this.counters.served },
      offences: { ...p.offences },
      bans: { ...p.bans },
      refused: p.refused,
      orphanRequests: o.requests,
      orphanParentsFetched: o.fetched,
      orphanParentsAbandoned: o.abandoned
    }
  }

  isStarted (): boolean {
    return this.controller != null
  }

  async start (): Promise<void> {
    if (this.controller != null) {
      return
    }
    this.controller = new AbortController()
    this.chunkLimiter = new Limiter(this.init.maxInflightChunks)
    await this.libp2p.handle(this.protocol, (stream) => {
      serveSyncStream(stream, {
        store: this.store,
        maxMessageBytes: BLOCK_SYNC_DEFAULTS.maxRequestBytes,
        idleTimeoutMs: this.init.idleTimeoutMs,
        maxInflight: this.init.maxInboundRequestsPerPeer,
        log: this.serverLog,
        onServed: (type) => {
          this.counters.served[type] = (this.counters.served[type] ?? 0) + 1
        }
      })
    }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    this.penalties.addEventListener('peer:banned', this.onBanned)
    this.store.addEventListener?.('orphan', this.onOrphan)
    this.orphans.start()
    this.orphans.notify()
    if (this.init.syncOnConnect) {
      // peers identified before start (e.g. bootstrap) are caught up too
      for (const peerId of this.libp2p.getPeers()) {
        void this.peerSupportsSync(peerId).then(ok => { if (ok) { this.scheduleSync(peerId) } })
      }
    }
  }

  async stop (): Promise<void> {
    if (this.controller == null) {
      return
    }
    this.controller.abort(new NetError(NetErrorCode.NOT_STARTED, 'block sync stopped'))
    this.controller = undefined
    for (const key of [...this.syncRetries.keys()]) {
      this.clearRetry(key)
    }
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    this.penalties.removeEventListener('peer:banned', this.onBanned)
    this.store.removeEventListener?.('orphan', this.onOrphan)
    const orphansStopped = this.orphans.stop()
    await this.libp2p.unhandle(this.protocol).catch(() => {})
    const clients = [...this.clients.values()]
    this.clients.clear()
    await Promise.all(clients.map(async c => c.close()))
    await Promise.allSettled([
      orphansStopped,
      ...[...this.peerSyncs.values()].map(async s => s.running),
      ...this.payloadFetches.values(),
      ...this.blockFetches.values()
    ])
  }

  /** Catch up with `peerId`: its tips, their missing ancestors, wanted payloads, and any payload left incomplete before. */
  async syncWith (peerId: PeerId, options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    const signal = this.signal(options.signal)
    this.checkNotBanned(peerId)
    const { ids } = await this.client(peerId).request({ type: 'get-tips' }, { signal })
    const result = await this.fetchBlocks(peerId, ids, { signal })
    await this.resumePayloads(result, signal)
    return result
  }

  /**
   * Fetch `ids` and every ancestor missing locally from `peerId`, add them
   * parents first, then fetch wanted payloads of the blocks added. Concurrent
   * calls for the same single id share one walk. `ids` are taken to be blocks
   * the peer announced (its tips, a block it gossiped): when it then lacks
   * them or their ancestry, it is penalised (missing-ancestry).
   */
  async fetchBlocks (peerId: PeerId, ids: Uint8Array[], options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    const key = ids.length === 1 ? hex(ids[0]) : undefined
    const existing = key != null ? this.blockFetches.get(key) : undefined
    if (existing != null) {
      return existing
    }
    this.checkNotBanned(peerId)
    const run = this.walk(peerId, ids, this.signal(options.signal), { advertised: true, maxBlocks: this.init.maxBlocksPerSync })
    if (key != null) {
      this.blockFetches.set(key, run)
      void run.catch(() => {}).finally(() => this.blockFetches.delete(key))
    }
    return run
  }

  /**
   * Fetch the missing payload chunks of a stored block from the connected
   * peers that have it, several at once, rotating peers per chunk and trying
   * the next peer when one fails. Avoided peers (PeerPenalties) come after
   * every peer in good standing; one that serves bytes that are not the chunk
   * is penalised and not asked again in this fetch. Chunks already stored are
   * kept and skipped. Throws ERR_PAYLOAD_UNAVAILABLE when some chunks could
   * not be had.
   */
  async fetchPayload (id: Uint8Array, options: { signal?: AbortSignal, peers?: PeerId[] } = {}): Promise<void> {
    const key = hex(id)
    const existing = this.payloadFetches.get(key)
    if (existing != null) {
      return existing
    }
    const run = this.fetchPayloadOnce(id, options.peers, this.signal(options.signal))
    this.payloadFetches.set(key, run)
    try {
      await run
    } finally {
      this.payloadFetches.delete(key)
    }
  }

  /** Peers with an open connection that announced the block-sync protocol (banned ones left out). */
  async syncPeers (): Promise<PeerId[]> {
    const peers = await Promise.all(this.libp2p.getPeers().map(async p => (!this.penalties.isBanned(p) && await this.peerSupportsSync(p)) ? p : undefined))
    return peers.filter((p): p is PeerId => p != null)
  }

  /** Sync peers in good standing first, avoided ones last. */
  private async rankedSyncPeers (): Promise<PeerId[]> {
    const peers = await this.syncPeers()
    return [...peers.filter(p => !this.penalties.isAvoided(p)), ...peers.filter(p => this.penalties.isAvoided(p))]
  }

  private checkNotBanned (peerId: PeerId): void {
    if (this.penalties.isBanned(peerId)) {
      throw new NetError(NetErrorCode.PEER_BANNED, `${peerId} is banned`)
    }
  }

  /** Orphan fetcher: walk a missing parent from `peerId` (it did not announce it); true once it is stored. */
  private async fetchParent (peerId: PeerId, id: Uint8Array, maxBlocks: number, signal: AbortSignal): Promise<boolean> {
    this.checkNotBanned(peerId)
    await this.walk(peerId, [id], this.signal(signal), { advertised: false, maxBlocks })
    return this.store.has(id)
  }

  private signal (signal?: AbortSignal): AbortSignal {
    if (this.controller == null) {
      throw new NetError(NetErrorCode.NOT_STARTED, 'block sync is not started')
    }
    return signal == null ? this.controller.signal : AbortSignal.any([signal, this.controller.signal])
  }

  private client (peerId: PeerId): SyncClient {
    const key = peerId.toString()
    let client = this.clients.get(key)
    if (client == null) {
      client = new SyncClient({
        peerId,
        openStream: async (signal) => this.libp2p.dialProtocol(peerId, this.protocol, { signal }),
        maxMessageBytes: this.init.maxMessageBytes,
        idleTimeoutMs: this.init.idleTimeoutMs,
        requestTimeoutMs: this.init.requestTimeoutMs,
        maxInflight: this.init.maxOutboundRequestsPerPeer
      })
      this.clients.set(key, client)
    }
    return client
  }

  private async peerSupportsSync (peerId: PeerId): Promise<boolean> {
    try {
      const peer = await this.libp2p.peerStore.get(peerId)
      return peer.protocols.includes(this.protocol)
    } catch {
      return false
    }
  }

  private onIdentify (evt: CustomEvent<IdentifyResult>): void {
    const { peerId, protocols } = evt.detail
    if (this.penalties.isBanned(peerId)) {
      // reached us past the gater (a libp2p without it): ignored, hung up again
      this.hangUp(peerId)
      return
    }
    if (!protocols.includes(this.protocol)) {
      return
    }
    // a new source for missing parents
    this.orphans.notify()
    // libp2p redials peers tagged keep-alive* after a restart (peer store persisted)
    this.libp2p.peerStore.merge(peerId, { tags: { [KEEP_ALIVE_TAG]: { value: 50 } } })
      .catch((err: Error) => { this.log.warn('could not tag %p - %e', peerId, err) })
    if (this.init.syncOnConnect) {
      this.scheduleSync(peerId)
    }
  }

  private onBanned (evt: Event): void {
    const { peerId, reason, until } = (evt as CustomEvent<PeerBannedEvent>).detail
    this.log.info('banning %p (%s) until %s', peerId, reason, new Date(until).toISOString())
    // untagged first, so libp2p's reconnect queue does not redial it on the
    // disconnect (the gater would refuse the dial anyway)
    this.libp2p.peerStore.merge(peerId, { tags: { [KEEP_ALIVE_TAG]: undefined } })
      .catch((err: Error) => { this.log.warn('could not untag %p - %e', peerId, err) })
      .finally(() => { this.hangUp(peerId) })
  }

  private hangUp (peerId: PeerId): void {
    const key = peerId.toString()
    const client = this.clients.get(key)
    if (client != null) {
      this.clients.delete(key)
      void client.close()
    }
    this.libp2p.hangUp(peerId).catch((err: Error) => { this.log('could not hang up on %p - %e', peerId, err) })
  }

  private onOrphan (): void {
    this.orphans.notify()
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const key = evt.detail.toString()
    this.clearRetry(key)
    const client = this.clients.get(key)
    if (client != null) {
      this.clients.delete(key)
      void client.close()
    }
  }

  /** Run one syncWith per peer at a time; a request while one runs queues exactly one more. */
  private scheduleSync (peerId: PeerId): void {
    if (this.controller == null) {
      return
    }
    if (this.penalties.isBanned(peerId)) {
      return
    }
    const key = peerId.toString()
    const current = this.peerSyncs.get(key)
    if (current != null) {
      current.again = true
      return
    }
    const retry = this.syncRetries.get(key)
    if (retry?.timer != null) {
      // this catch-up is the retry the timer waited for
      clearTimeout(retry.timer)
      retry.timer = undefined
    }
    const entry = { running: Promise.resolve(), again: false }
    entry.running = (async () => {
      let failed = false
      do {
        entry.again = false
        this.counters.syncs++
        try {
          const result = await this.syncWith(peerId)
          failed = false
          this.log('synced with %p: %o', peerId, result)
        } catch (err) {
          failed = true
          this.counters.syncErrors++
          this.log.warn('sync with %p failed - %e', peerId, err)
        }
      } while (entry.again && this.controller != null)
      this.peerSyncs.delete(key)
      if (failed) {
        this.retryLater(peerId)
      } else {
        this.syncRetries.delete(key)
      }
    })()
    this.peerSyncs.set(key, entry)
  }

  /**
   * After a failed catch-up with `peerId`: try again after the backoff
   * (syncRetryBaseMs doubling per failure in a row, capped at syncRetryMaxMs)
   * while the peer is connected and not banned, at most maxSyncRetries times
   * in a row. Nothing else would: catch-up runs on identify, and a node that
   * missed the chain's tips then waits for the next block gossiped.
   */
  private retryLater (peerId: PeerId): void {
    const key = peerId.toString()
    const failures = (this.syncRetries.get(key)?.failures ?? 0) + 1
    if (this.controller == null || this.penalties.isBanned(peerId) || this.libp2p.getConnections(peerId).length === 0) {
      this.syncRetries.delete(key)
      return
    }
    if (failures > this.init.maxSyncRetries) {
      this.syncRetries.delete(key)
      this.log.warn('catch-up with %p failed %d times in a row; tried again when it reconnects', peerId, failures)
      return
    }
    const delay = Math.min(this.init.syncRetryBaseMs * 2 ** (failures - 1), this.init.syncRetryMaxMs)
    const timer = setTimeout(() => {
      const current = this.syncRetries.get(key)
      if (current?.timer !== timer) {
        return
      }
      current.timer = undefined
      this.counters.syncRetries++
      this.scheduleSync(peerId)
    }, delay)
    timer.unref?.()
    this.syncRetries.set(key, { failures, timer })
  }

  private clearRetry (key: string): void {
    const retry = this.syncRetries.get(key)
    if (retry?.timer != null) {
      clearTimeout(retry.timer)
    }
    this.syncRetries.delete(key)
  }

  /**
   * Fetch `ids` and their missing ancestry from `peerId` (at most
   * `options.maxBlocks` headers), add them parents first, fetch wanted
   * payloads. The peer is penalised once per walk for each kind of lie: a
   * header that is not what was asked or fails a rule that does not depend on
   * local state (invalid-header), and not having a block it announced or a
   * parent of a header it sent (missing-ancestry). Timeouts and BUSY answers
   * are not penalised.
   */
  private async walk (peerId: PeerId, ids: Uint8Array[], signal: AbortSignal, options: WalkOptions): Promise<SyncResult> {
    const result = emptyResult()
    const client = this.client(peerId)
    const fetched = new Map<string, FetchedHeader>()
    const seen = new Set<string>()
    const queue: Uint8Array[] = []
    /** ids the peer vouched for: its announced ids and the parents of headers it sent */
    const vouched = new Set<string>()
    const want = async (id: Uint8Array, byPeer: boolean): Promise<void> => {
      const key = hex(id)
      if (byPeer) {
        vouched.add(key)
      }
      if (seen.has(key)) {
        return
      }
      seen.add(key)
      if (!(await this.store.has(id))) {
        queue.push(id)
      }
    }
    const lied = (offence: SyncOffence, err: NetError): NetError => {
      this.penalties.penalise(peerId, offence)
      return err
    }
    for (const id of ids) {
      await want(id, options.advertised)
    }
    let missingAncestry = false
    while (queue.length > 0) {
      signal.throwIfAborted()
      const batch = queue.splice(0, this.init.headersPerRequest)
      if (fetched.size + batch.length > options.maxBlocks) {
        throw new NetError(NetErrorCode.SYNC_TOO_LARGE, `more than ${options.maxBlocks} unknown blocks behind ${ids.length === 1 ? hex(ids[0]) : 'the tips'} at ${peerId}`)
      }
      const { headers } = await client.request({ type: 'get-headers', ids: batch }, { signal })
      if (headers.length !== batch.length) {
        throw lied(SyncOffence.InvalidHeader, new NetError(NetErrorCode.BAD_MESSAGE, `${peerId} answered ${batch.length} ids with ${headers.length} headers`))
      }
      for (let i = 0; i < batch.length; i++) {
        const bytes = headers[i]
        if (bytes == null) {
          result.notFound++
          missingAncestry ||= vouched.has(hex(batch[i]))
          continue
        }
        let parsed: { id: Uint8Array, parents: Uint8Array[] }
        try {
          parsed = parseSignedHeader(bytes)
        } catch (err) {
          throw lied(SyncOffence.InvalidHeader, new NetError(NetErrorCode.WRONG_BLOCK, `${peerId} sent an undecodable header for ${hex(batch[i])}`, { cause: err }))
        }
        if (!equalBytes(parsed.id, batch[i])) {
          throw lied(SyncOffence.InvalidHeader, new NetError(NetErrorCode.WRONG_BLOCK, `${peerId} sent block ${hex(parsed.id)} for ${hex(batch[i])}`))
        }
        const key = hex(parsed.id)
        fetched.set(key, { id: parsed.id, key, bytes, parents: parsed.parents })
        result.fetched++
        for (const parent of parsed.parents) {
          await want(parent, true)
        }
      }
    }
    if (missingAncestry) {
      this.log('%p lacks the ancestry of blocks it announced or sent', peerId)
      this.penalties.penalise(peerId, SyncOffence.MissingAncestry)
    }
    const added = await this.addFetched(peerId, fetched, result, signal)
    if (result.orphaned > 0) {
      this.orphans.notify()
    }
    for (const id of added) {
      await this.maybeFetchPayload(id, [peerId], result, signal)
    }
    return result
  }

  /** Add what a walk fetched, parents first; returns the ids added. A rejection that is the sender's lie costs it once. */
  private async addFetched (peerId: PeerId, fetched: Map<string, FetchedHeader>, result: SyncResult, signal: AbortSignal): Promise<Uint8Array[]> {
    const added: Uint8Array[] = []
    let invalid = false
    for (const item of topologicalOrder(fetched)) {
      signal.throwIfAborted()
      try {
        const outcome = await this.store.addBlock(item.bytes)
        result[outcome]++
        if (outcome === 'added') {
          this.counters.blocksAdded++
          added.push(item.id)
        }
      } catch (err) {
        if (!(err instanceof ChainError)) {
          throw err
        }
        result.rejected[err.code] = (result.rejected[err.code] ?? 0) + 1
        invalid ||= HEADER_OFFENCE_CODES.has(err.code)
        this.log('%p sent a block the chain refused: %s', peerId, err.message)
      }
    }
    if (invalid) {
      this.penalties.penalise(peerId, SyncOffence.InvalidHeader)
    }
    return added
  }

  /**
   * Fetch the payload of a stored block when it is incomplete and wanted
   * (`wantPayload`); returns whether a fetch ran. Used after gossip adds a block.
   */
  async fetchWantedPayload (id: Uint8Array, options: { signal?: AbortSignal, peers?: PeerId[] } = {}): Promise<boolean> {
    const block = await this.store.get(id)
    if (block == null || block.payloadComplete || block.header.payloadSize === 0n) {
      return false
    }
    if (this.init.wantPayload != null && !this.init.wantPayload(block)) {
      return false
    }
    await this.fetchPayload(id, options)
    return true
  }

  private async maybeFetchPayload (id: Uint8Array, prefer: PeerId[], result: SyncResult, signal: AbortSignal): Promise<void> {
    try {
      if (await this.fetchWantedPayload(id, { signal, peers: prefer })) {
        result.payloads++
      }
    } catch (err) {
      signal.throwIfAborted()
      if (err instanceof ChainError && err.code === ChainErrorCode.CHUNK_LENGTH) {
        // permanent: no peer can ever serve chunks of the lengths this header implies
        result.unsatisfiable++
        this.log.warn('payload of %s can never complete: %s', hex(id), err.message)
        return
      }
      result.payloadErrors++
      this.log.warn('payload of %s incomplete - %e', hex(id), err)
    }
  }

  /** Fetch wanted payloads left incomplete (e.g. by a restart mid-download). */
  private async resumePayloads (result: SyncResult, signal: AbortSignal): Promise<void> {
    for await (const block of this.store.topological()) {
      signal.throwIfAborted()
      if (!block.payloadComplete && block.header.payloadSize > 0n) {
        await this.maybeFetchPayload(block.id, [], result, signal)
      }
    }
  }

  /** Indices of chunks not (or not intact) in the store. */
  private async missingChunks (block: StoredBlock): Promise<number[]> {
    if (block.payloadComplete) {
      return []
    }
    if (this.store.missingChunks != null) {
      // the ChainStore answers from its index without reading chunk files
      return this.store.missingChunks(block.id)
    }
    const missing: number[] = []
    for (let i = 0; i < block.header.chunkHashes.length; i++) {
      try {
        await this.store.getChunk(block.id, i)
      } catch (err) {
        if (!(err instanceof ChainError) || (err.code !== ChainErrorCode.CHUNK_MISSING && err.code !== ChainErrorCode.CHUNK_HASH)) {
          throw err
        }
        missing.push(i)
      }
    }
    return missing
  }

  /**
   * Connected sync peers that hold the block, complete holders before partial
   * ones: `primary` are in good standing; avoided peers are asked what they
   * hold only when no peer in good standing holds all of it, and come back as
   * `fallback`. Banned peers are never asked.
   */
  private async payloadPeers (id: Uint8Array, prefer: PeerId[], signal: AbortSignal): Promise<{ primary: PeerId[], fallback: PeerId[] }> {
    const candidates = new Map<string, PeerId>()
    for (const p of [...prefer, ...(await this.syncPeers())]) {
      if (!this.penalties.isBanned(p)) {
        candidates.set(p.toString(), p)
      }
    }
    const holders = async (peers: PeerId[]): Promise<{ complete: PeerId[], all: PeerId[] }> => {
      const statuses = await Promise.all(peers.map(async (peerId) => {
        try {
          const { status } = await this.client(peerId).request({ type: 'get-have', ids: [id] }, { signal })
          return { peerId, status: status[0] ?? HaveStatus.Unknown }
        } catch {
          return { peerId, status: HaveStatus.Unknown }
        }
      }))
      const complete = statuses.filter(s => s.status === HaveStatus.Complete).map(s => s.peerId)
      return { complete, all: [...complete, ...statuses.filter(s => s.status === HaveStatus.Partial).map(s => s.peerId)] }
    }
    const all = [...candidates.values()]
    const primary = await holders(all.filter(p => !this.penalties.isAvoided(p)))
    const fallback = primary.complete.length > 0 ? [] : (await holders(all.filter(p => this.penalties.isAvoided(p)))).all
    return { primary: primary.all, fallback }
  }

  private async fetchPayloadOnce (id: Uint8Array, prefer: PeerId[] = [], signal: AbortSignal): Promise<void> {
    const block = await this.store.get(id)
    if (block == null) {
      throw new NetError(NetErrorCode.INVALID_ARGUMENT, `block ${hex(id)} is not in the store`)
    }
    const missing = await this.missingChunks(block)
    if (missing.length === 0) {
      return
    }
    const { primary, fallback } = await this.payloadPeers(id, prefer, signal)
    if (primary.length === 0 && fallback.length === 0) {
      throw new NetError(NetErrorCode.PAYLOAD_UNAVAILABLE, `no connected peer has the payload of ${hex(id)}`)
    }
    const rotate = (peers: PeerId[], by: number): PeerId[] => peers.map((_, i) => peers[(by + i) % peers.length])
    const retired = new Set<string>()
    const failed: number[] = []
    const fetchChunk = async (index: number): Promise<void> => {
      let tries = 0
      // chunks spread over peers in good standing; avoided ones only after those failed
      for (const peerId of [...rotate(primary, index), ...rotate(fallback, index)]) {
        if (tries >= this.init.maxChunkAttempts) {
          break
        }
        if (retired.has(peerId.toString()) || this.penalties.isBanned(peerId)) {
          continue
        }
        tries++
        const release = await this.chunkLimiter.acquire(signal)
        let data: Uint8Array | undefined
        try {
          data = (await this.client(peerId).request({ type: 'get-chunk', id, index }, { signal })).data
          await this.store.putChunk(id, index, data)
          this.counters.chunksFetched++
          return
        } catch (err) {
          signal.throwIfAborted()
          this.counters.chunkErrors++
          if (err instanceof ChainError) {
            const offence = data != null ? chunkOffence(block.header, index, data) : undefined
            if (offence != null) {
              // the peer sent bytes that are not the chunk: it pays, and is not asked again in this fetch
              this.penalties.penalise(peerId, offence)
            } else if (err.code !== ChainErrorCode.CHUNK_HASH && err.code !== ChainErrorCode.PAYLOAD_SIZE) {
              throw err
            }
            retired.add(peerId.toString())
          }
          this.log('chunk %d of %s from %p failed - %e', index, hex(id), peerId, err)
        } finally {
          release()
        }
      }
      failed.push(index)
    }
    // one worker per in-flight slot; each takes the next missing chunk
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < missing.length) {
        await fetchChunk(missing[next++])
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.init.maxInflightChunks, missing.length) }, worker))
    if (failed.length > 0) {
      throw new NetError(NetErrorCode.PAYLOAD_UNAVAILABLE, `${failed.length} of ${missing.length} missing chunks of ${hex(id)} could not be fetched`)
    }
  }
}
