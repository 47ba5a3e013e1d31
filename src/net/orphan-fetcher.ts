/**
 * Fetches the parents orphans wait for. The chain store parks a block whose
 * parents it lacks (ChainStore.addBlock → 'orphaned') and lists what orphans
 * wait for (`missingParents()`); this asks connected peers for those parents,
 * within bounds:
 *
 * - at most `maxOutstanding` parents are being fetched at once;
 * - each walk fetches at most `maxDepth` headers (deeper gaps are catch-up
 * sync's job);
 * - a parent is tried at most `maxAttempts` times, from a different peer each
 * time while untried peers remain (peers in good standing first), with
 * exponential backoff between tries; then it is abandoned until it stops
 * being missing (an orphan pool eviction, or catch-up);
 * - a parent is first tried `graceMs` after it is seen missing, so the walk
 * gossip or sync started towards the announcing peer can finish first.
 *
 * A round runs when `notify()` is called (an orphan was parked, a peer
 * arrived), when a backoff ends, and after each fetch. Nothing is persisted:
 * the orphan pool is in memory too.
 */
import { ORPHAN_FETCH_DEFAULTS } from './constants.ts'
import type { BlyLogger } from '../protocols/logger.ts'
import type { PeerId } from '@libp2p/interface'

export interface OrphanFetcherInit {
  maxOutstanding?: number
  maxAttempts?: number
  maxDepth?: number
  graceMs?: number
  retryBaseMs?: number
  retryMaxMs?: number
  maxTracked?: number
}

export interface OrphanFetcherComponents {
  /** parents orphans wait for (ChainStore.missingParents) */
  missingParents(): Uint8Array[]
  /** connected peers to ask, best first (banned ones left out) */
  peers(): Promise<PeerId[]>
  /** walk `id` and its missing ancestors (at most `maxDepth` headers) from `peerId`; true once `id` is stored */
  fetch(peerId: PeerId, id: Uint8Array, maxDepth: number, signal: AbortSignal): Promise<boolean>
  /** the block exchange's logger, scoped */
  log: BlyLogger
}

export interface OrphanFetchStats {
  /** walks started for missing parents */
  requests: number
  /** missing parents fetched and stored */
  fetched: number
  /** missing parents given up on after maxAttempts */
  abandoned: number
}

interface Wanted {
  id: Uint8Array
  attempts: number
  /** unix ms of the next try */
  nextAt: number
  /** peers (string ids) asked so far */
  tried: Set<string>
}

function hex (id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')
}

export class OrphanFetcher {
  readonly stats: OrphanFetchStats
  private readonly components: OrphanFetcherComponents
  private readonly init: Required<OrphanFetcherInit>
  private readonly wanted: Map<string, Wanted>
  private readonly inflight: Set<string>
  private readonly walks: Set<Promise<void>>
  private controller?: AbortController
  private timer?: ReturnType<typeof setTimeout>
  private timerAt: number
  private running: boolean
  private again: boolean

  constructor (components: OrphanFetcherComponents, init: OrphanFetcherInit = {}) {
    this.components = components
    this.init = { ...ORPHAN_FETCH_DEFAULTS, ...init }
    for (const key of ['maxOutstanding', 'maxAttempts', 'maxDepth', 'maxTracked'] as const) {
      if (!Number.isInteger(this.init[key]) || this.init[key] < 1) {
        throw new RangeError(`${key} must be a positive integer, got ${this.init[key]}`)
      }
    }
    this.stats = { requests: 0, fetched: 0, abandoned: 0 }
    this.wanted = new Map()
    this.inflight = new Set()
    this.walks = new Set()
    this.timerAt = Infinity
    this.running = false
    this.again = false
  }

  start (): void {
    if (this.controller == null) {
      this.controller = new AbortController()
    }
  }

  /** Abort the walks in flight and wait for them to settle. */
  async stop (): Promise<void> {
    this.controller?.abort()
    this.controller = undefined
    this.clearTimer()
    this.wanted.clear()
    await Promise.allSettled([...this.walks])
  }

  /** Something changed (an orphan was parked, a peer arrived): run a round soon. */
  notify (): void {
    if (this.controller == null) {
      return
    }
    void this.round()
  }

  private async round (): Promise<void> {
    if (this.running) {
      this.again = true
      return
    }
    this.running = true
    try {
      do {
        this.again = false
        await this.roundOnce()
      } while (this.again && this.controller != null)
    } catch (err) {
      this.components.log.warn('orphan parent round failed - %e', err)
    } finally {
      this.running = false
    }
  }

  private async roundOnce (): Promise<void> {
    const signal = this.controller?.signal
    if (signal == null) {
      return
    }
    const now = Date.now()
    const missing = this.components.missingParents().slice(0, this.init.maxTracked)
    const keys = new Set<string>()
    for (const id of missing) {
      const key = hex(id)
      keys.add(key)
      if (!this.wanted.has(key)) {
        this.wanted.set(key, { id, attempts: 0, nextAt: now + this.init.graceMs, tried: new Set() })
      }
    }
    for (const key of this.wanted.keys()) {
      if (!keys.has(key) && !this.inflight.has(key)) {
        // stored meanwhile, or its orphan was evicted
        this.wanted.delete(key)
      }
    }
    const due = [...this.wanted.entries()].filter(([key, w]) => !this.inflight.has(key) && w.attempts < this.init.maxAttempts && w.nextAt <= now)
    if (due.length > 0 && this.inflight.size < this.init.maxOutstanding) {
      const peers = await this.components.peers()
      signal.throwIfAborted()
      if (peers.length === 0) {
        // nobody to ask: no try is spent; a peer's arrival notifies again
        return
      }
      for (const [key, w] of due) {
        if (this.inflight.size >= this.init.maxOutstanding) {
          break
        }
        this.launch(key, w, this.pickPeer(w, peers), signal)
      }
    }
    this.armTimer()
  }

  /** Peers not asked yet, best first; once all were asked, round robin. */
  private pickPeer (w: Wanted, peers: PeerId[]): PeerId {
    return peers.find(p => !w.tried.has(p.toString())) ?? peers[w.attempts % peers.length]
  }

  private launch (key: string, w: Wanted, peerId: PeerId, signal: AbortSignal): void {
    this.inflight.add(key)
    w.attempts++
    w.tried.add(peerId.toString())
    this.stats.requests++
    const walk = this.components.fetch(peerId, w.id, this.init.maxDepth, signal)
      .catch((err: Error) => {
        this.components.log('fetching missing parent %s from %p failed - %e', key, peerId, err)
        return false
      })
      .then(stored => {
        if (signal.aborted) {
          return
        }
        if (stored) {
          this.stats.fetched++
          this.wanted.delete(key)
          return
        }
        if (w.attempts >= this.init.maxAttempts) {
          this.stats.abandoned++
          this.components.log.warn('giving up on missing parent %s after %d tries', key, w.attempts)
          return
        }
        w.nextAt = Date.now() + Math.min(this.init.retryMaxMs, this.init.retryBaseMs * 2 ** (w.attempts - 1))
      })
      .finally(() => {
        this.inflight.delete(key)
        this.walks.delete(walk)
        if (!signal.aborted) {
          void this.round()
        }
      })
    this.walks.add(walk)
  }

  /** Wake up when the earliest backoff (or grace) of a parent still to try ends. */
  private armTimer (): void {
    let at = Infinity
    for (const [key, w] of this.wanted) {
      if (!this.inflight.has(key) && w.attempts < this.init.maxAttempts) {
        at = Math.min(at, w.nextAt)
      }
    }
    if (at === Infinity || at >= this.timerAt) {
      return
    }
    this.clearTimer()
    this.timerAt = at
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.timerAt = Infinity
      void this.round()
    }, Math.max(0, at - Date.now()))
    this.timer.unref?.()
  }

  private clearTimer (): void {
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.timerAt = Infinity
  }
}
