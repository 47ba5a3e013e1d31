/**
 * Block exchange over /bly/blocks/1.0.0: serves the local chain to peers and
 * catches up from them. On every new peer that speaks the protocol it asks
 * for the peer's tips, walks parents back until it reaches blocks it has,
 * adds what it fetched parents-first, then fetches wanted payloads chunk by
 * chunk from every peer that has them (each chunk verified by the store's
 * putChunk, a bounded number in memory, what is stored stays stored).
 */
import { blockId } from '../chain/block-crypto.ts'
import { ChainError, ChainErrorCode } from '../chain/errors.ts'
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { HaveStatus } from '../protocols/block-sync.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { BLOCK_SYNC_DEFAULTS, BLOCK_SYNC_PROTOCOL, KEEP_ALIVE_TAG } from './constants.ts'
import { NetError, NetErrorCode } from './errors.ts'
import { Limiter } from './limiter.ts'
import { SyncClient } from './sync-client.ts'
import { serveSyncStream } from './sync-server.ts'
import type { ChainStoreApi, StoredBlock } from '../chain/types.ts'
import type { IdentifyResult, Libp2p, Logger, PeerId } from '@libp2p/interface'

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
  /** catch up with every peer that connects and speaks the protocol (default true) */
  syncOnConnect?: boolean
  /** which blocks' payloads to fetch after headers arrive (default: every block) */
  wantPayload?(block: StoredBlock): boolean
}

/** The chain store as block sync uses it: ChainStore's optional `missingChunks` saves reading present chunks. */
export type SyncStore = ChainStoreApi & { missingChunks?(id: Uint8Array): Promise<number[]> }

export interface BlockSyncComponents {
  libp2p: Libp2p
  store: SyncStore
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
}

export interface BlockSyncStats {
  syncs: number
  syncErrors: number
  blocksAdded: number
  chunksFetched: number
  chunkErrors: number
  served: Record<string, number>
}

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
  return { fetched: 0, added: 0, duplicate: 0, orphaned: 0, rejected: {}, notFound: 0, payloads: 0, payloadErrors: 0 }
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
  readonly stats: BlockSyncStats
  private readonly libp2p: Libp2p
  private readonly store: SyncStore
  private readonly init: Required<Omit<BlockSyncInit, 'wantPayload' | 'protocol'>> & Pick<BlockSyncInit, 'wantPayload'>
  private readonly log: Logger
  private readonly clients: Map<string, SyncClient>
  private readonly peerSyncs: Map<string, { running: Promise<void>, again: boolean }>
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
      syncOnConnect: init.syncOnConnect ?? true,
      wantPayload: init.wantPayload
    }
    this.log = components.libp2p.logger.forComponent('bly:block-sync')
    this.stats = { syncs: 0, syncErrors: 0, blocksAdded: 0, chunksFetched: 0, chunkErrors: 0, served: {} }
    this.clients = new Map()
    this.peerSyncs = new Map()
    this.payloadFetches = new Map()
    this.blockFetches = new Map()
    this.chunkLimiter = new Limiter(this.init.maxInflightChunks)
    this.onIdentify = this.onIdentify.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
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
        onServed: (type) => {
          this.stats.served[type] = (this.stats.served[type] ?? 0) + 1
        }
      })
    }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
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
    this.controller.abort(new NetError(NetErrorCode.NotStarted, 'block sync stopped'))
    this.controller = undefined
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.libp2p.unhandle(this.protocol).catch(() => {})
    const clients = [...this.clients.values()]
    this.clients.clear()
    await Promise.all(clients.map(async c => c.close()))
    await Promise.allSettled([
      ...[...this.peerSyncs.values()].map(async s => s.running),
      ...this.payloadFetches.values(),
      ...this.blockFetches.values()
    ])
  }

  /** Catch up with `peerId`: its tips, their missing ancestors, wanted payloads, and any payload left incomplete before. */
  async syncWith (peerId: PeerId, options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    const signal = this.signal(options.signal)
    const { ids } = await this.client(peerId).request({ type: 'get-tips' }, { signal })
    const result = await this.fetchBlocks(peerId, ids, { signal })
    await this.resumePayloads(result, signal)
    return result
  }

  /**
   * Fetch `ids` and every ancestor missing locally from `peerId`, add them
   * parents first, then fetch wanted payloads of the blocks added. Concurrent
   * calls for the same single id share one walk.
   */
  async fetchBlocks (peerId: PeerId, ids: Uint8Array[], options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    const key = ids.length === 1 ? hex(ids[0]) : undefined
    const existing = key != null ? this.blockFetches.get(key) : undefined
    if (existing != null) {
      return existing
    }
    const run = this.walk(peerId, ids, this.signal(options.signal))
    if (key != null) {
      this.blockFetches.set(key, run)
      void run.catch(() => {}).finally(() => this.blockFetches.delete(key))
    }
    return run
  }

  /**
   * Fetch the missing payload chunks of a stored block from the connected
   * peers that have it, several at once, rotating peers per chunk and trying
   * the next peer when one fails. Chunks already stored are kept and skipped.
   * Throws ERR_PAYLOAD_UNAVAILABLE when some chunks could not be had.
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

  /** Peers with an open connection that announced the block-sync protocol. */
  async syncPeers (): Promise<PeerId[]> {
    const peers = await Promise.all(this.libp2p.getPeers().map(async p => (await this.peerSupportsSync(p)) ? p : undefined))
    return peers.filter((p): p is PeerId => p != null)
  }

  private signal (signal?: AbortSignal): AbortSignal {
    if (this.controller == null) {
      throw new NetError(NetErrorCode.NotStarted, 'block sync is not started')
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
    if (!protocols.includes(this.protocol)) {
      return
    }
    // libp2p redials peers tagged keep-alive* after a restart (peer store persisted)
    this.libp2p.peerStore.merge(peerId, { tags: { [KEEP_ALIVE_TAG]: { value: 50 } } })
      .catch((err: Error) => { this.log.error('could not tag %p - %e', peerId, err) })
    if (this.init.syncOnConnect) {
      this.scheduleSync(peerId)
    }
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const key = evt.detail.toString()
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
    const key = peerId.toString()
    const current = this.peerSyncs.get(key)
    if (current != null) {
      current.again = true
      return
    }
    const entry = { running: Promise.resolve(), again: false }
    entry.running = (async () => {
      do {
        entry.again = false
        this.stats.syncs++
        try {
          const result = await this.syncWith(peerId)
          this.log('synced with %p: %o', peerId, result)
        } catch (err) {
          this.stats.syncErrors++
          this.log.error('sync with %p failed - %e', peerId, err)
        }
      } while (entry.again && this.controller != null)
      this.peerSyncs.delete(key)
    })()
    this.peerSyncs.set(key, entry)
  }

  private async walk (peerId: PeerId, ids: Uint8Array[], signal: AbortSignal): Promise<SyncResult> {
    const result = emptyResult()
    const client = this.client(peerId)
    const fetched = new Map<string, FetchedHeader>()
    const seen = new Set<string>()
    const queue: Uint8Array[] = []
    const want = async (id: Uint8Array): Promise<void> => {
      const key = hex(id)
      if (seen.has(key)) {
        return
      }
      seen.add(key)
      if (!(await this.store.has(id))) {
        queue.push(id)
      }
    }
    for (const id of ids) {
      await want(id)
    }
    while (queue.length > 0) {
      signal.throwIfAborted()
      const batch = queue.splice(0, this.init.headersPerRequest)
      if (fetched.size + batch.length > this.init.maxBlocksPerSync) {
        throw new NetError(NetErrorCode.SyncTooLarge, `more than ${this.init.maxBlocksPerSync} unknown blocks behind the tips of ${peerId}`)
      }
      const { headers } = await client.request({ type: 'get-headers', ids: batch }, { signal })
      if (headers.length !== batch.length) {
        throw new NetError(NetErrorCode.BadMessage, `${peerId} answered ${batch.length} ids with ${headers.length} headers`)
      }
      for (let i = 0; i < batch.length; i++) {
        const bytes = headers[i]
        if (bytes == null) {
          result.notFound++
          continue
        }
        let parsed: { id: Uint8Array, parents: Uint8Array[] }
        try {
          parsed = parseSignedHeader(bytes)
        } catch (err) {
          throw new NetError(NetErrorCode.WrongBlock, `${peerId} sent an undecodable header for ${hex(batch[i])}`, { cause: err })
        }
        if (!equalBytes(parsed.id, batch[i])) {
          throw new NetError(NetErrorCode.WrongBlock, `${peerId} sent block ${hex(parsed.id)} for ${hex(batch[i])}`)
        }
        const key = hex(parsed.id)
        fetched.set(key, { id: parsed.id, key, bytes, parents: parsed.parents })
        result.fetched++
        for (const parent of parsed.parents) {
          await want(parent)
        }
      }
    }
    const added: Uint8Array[] = []
    for (const item of topologicalOrder(fetched)) {
      signal.throwIfAborted()
      try {
        const outcome = await this.store.addBlock(item.bytes)
        result[outcome]++
        if (outcome === 'added') {
          this.stats.blocksAdded++
          added.push(item.id)
        }
      } catch (err) {
        if (!(err instanceof ChainError)) {
          throw err
        }
        result.rejected[err.code] = (result.rejected[err.code] ?? 0) + 1
        this.log('%p sent a block the chain refused: %s', peerId, err.message)
      }
    }
    for (const id of added) {
      await this.maybeFetchPayload(id, [peerId], result, signal)
    }
    return result
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
      result.payloadErrors++
      this.log.error('payload of %s incomplete - %e', hex(id), err)
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
        if (!(err instanceof ChainError) || (err.code !== ChainErrorCode.ChunkMissing && err.code !== ChainErrorCode.ChunkHash)) {
          throw err
        }
        missing.push(i)
      }
    }
    return missing
  }

  /** Connected sync peers that hold the block: complete holders first, then partial ones. */
  private async payloadPeers (id: Uint8Array, prefer: PeerId[], signal: AbortSignal): Promise<PeerId[]> {
    const candidates = new Map<string, PeerId>()
    for (const p of [...prefer, ...(await this.syncPeers())]) {
      candidates.set(p.toString(), p)
    }
    const statuses = await Promise.all([...candidates.values()].map(async (peerId) => {
      try {
        const { status } = await this.client(peerId).request({ type: 'get-have', ids: [id] }, { signal })
        return { peerId, status: status[0] ?? HaveStatus.Unknown }
      } catch {
        return { peerId, status: HaveStatus.Unknown }
      }
    }))
    return [
      ...statuses.filter(s => s.status === HaveStatus.Complete),
      ...statuses.filter(s => s.status === HaveStatus.Partial)
    ].map(s => s.peerId)
  }

  private async fetchPayloadOnce (id: Uint8Array, prefer: PeerId[] = [], signal: AbortSignal): Promise<void> {
    const block = await this.store.get(id)
    if (block == null) {
      throw new NetError(NetErrorCode.InvalidArgument, `block ${hex(id)} is not in the store`)
    }
    const missing = await this.missingChunks(block)
    if (missing.length === 0) {
      return
    }
    const peers = await this.payloadPeers(id, prefer, signal)
    if (peers.length === 0) {
      throw new NetError(NetErrorCode.PayloadUnavailable, `no connected peer has the payload of ${hex(id)}`)
    }
    const retired = new Set<string>()
    const failed: number[] = []
    const fetchChunk = async (index: number): Promise<void> => {
      let tries = 0
      for (let a = 0; a < peers.length && tries < this.init.maxChunkAttempts; a++) {
        const peerId = peers[(index + a) % peers.length]
        if (retired.has(peerId.toString())) {
          continue
        }
        tries++
        const release = await this.chunkLimiter.acquire(signal)
        try {
          const { data } = await this.client(peerId).request({ type: 'get-chunk', id, index }, { signal })
          await this.store.putChunk(id, index, data)
          this.stats.chunksFetched++
          return
        } catch (err) {
          signal.throwIfAborted()
          this.stats.chunkErrors++
          if (err instanceof ChainError) {
            if (err.code !== ChainErrorCode.ChunkHash && err.code !== ChainErrorCode.PayloadSize) {
              throw err
            }
            // the peer sent bytes that are not the chunk: never ask it again
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
      throw new NetError(NetErrorCode.PayloadUnavailable, `${failed.length} of ${missing.length} missing chunks of ${hex(id)} could not be fetched`)
    }
  }
}
