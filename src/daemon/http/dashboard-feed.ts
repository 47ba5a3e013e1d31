/**
 * The dashboard's feed: snapshots of what the daemon sees (this node, the
 * swarm's spans, the chains, proposals, validators...), computed from named
 * sections, and the event streams of the pages that follow them.
 *
 * Sections run side by side, each bounded by sectionTimeoutMs; one that
 * throws or times out is left out of that snapshot and named in `errors`
 * (the others still show). A section returning undefined is absent (the
 * daemon has no such part). One computation runs at a time: every caller
 * during it gets its result. A snapshot no older than maxAgeMs is reused.
 *
 * While at least one stream is open, a snapshot is computed every intervalMs
 * and at once on kick() (at most every minIntervalMs), and sent, as a
 * `snapshot` event whose id is its seq, to every stream whose last event
 * differs from it in anything but `at` and `seq`; a stream with nothing new
 * for keepaliveMs gets a comment line. No stream, no timer: an idle daemon
 * computes nothing. At most maxClients streams are open at once (add()
 * refuses one more with 429). stop() ends every stream and the timer.
 */
import { silentLogger } from '../../protocols/logger.ts'
import { DASHBOARD_DEFAULTS } from './constants.ts'
import { HttpApiError, HttpErrorCode } from './errors.ts'
import type { SseStream } from './sse.ts'
import type { DashboardSnapshotJson } from '../../protocols/dashboard.ts'
import type { BlyComponentLogger, BlyLogger } from '../../protocols/logger.ts'

/** One section of the snapshot: its JSON, or undefined when the daemon has no such part. */
export type DashboardSection = (signal: AbortSignal) => unknown

export interface DashboardFeedComponents {
  /** the sections by name, in the order the snapshot lists them */
  sections: Record<string, DashboardSection>
  /** logs as bly:daemon:dashboard (default silent) */
  logger?: BlyComponentLogger
}

export interface DashboardFeedInit {
  intervalMs?: number
  minIntervalMs?: number
  maxAgeMs?: number
  maxClients?: number
  keepaliveMs?: number
  sectionTimeoutMs?: number
}

interface Client {
  stream: SseStream
  /** the last snapshot sent, less at and seq */
  lastKey: string
  lastSentAt: number
  /** a send waits for the socket to drain: a slow reader skips snapshots, it does not hold up the others */
  busy: boolean
}

/** The snapshot's JSON less `at` and `seq`: equal keys, nothing new to send. */
function changeKey (snapshot: DashboardSnapshotJson): string {
  const { at, seq, ...rest } = snapshot
  return JSON.stringify(rest)
}

export class DashboardFeed {
  private readonly sections: Record<string, DashboardSection>
  private readonly init: Required<DashboardFeedInit>
  private readonly log: BlyLogger
  private readonly clients: Set<Client>
  private readonly controller: AbortController
  private seq: number
  private latest: DashboardSnapshotJson | undefined
  private computing: Promise<DashboardSnapshotJson> | undefined
  private timer: NodeJS.Timeout | undefined
  private lastRunAt: number

  constructor (components: DashboardFeedComponents, init: DashboardFeedInit = {}) {
    const d = DASHBOARD_DEFAULTS
    this.sections = components.sections
    this.init = {
      intervalMs: init.intervalMs ?? d.intervalMs,
      minIntervalMs: init.minIntervalMs ?? d.minIntervalMs,
      maxAgeMs: init.maxAgeMs ?? d.maxAgeMs,
      maxClients: init.maxClients ?? d.maxClients,
      keepaliveMs: init.keepaliveMs ?? d.keepaliveMs,
      sectionTimeoutMs: init.sectionTimeoutMs ?? d.sectionTimeoutMs
    }
    this.log = (components.logger ?? silentLogger()).forComponent('bly:daemon:dashboard')
    this.clients = new Set()
    this.controller = new AbortController()
    this.seq = 0
    this.lastRunAt = 0
  }

  /** event streams open now */
  get streams (): number {
    return this.clients.size
  }

  /** The latest snapshot when it is at most maxAgeMs old, else a new one. */
  async snapshot (): Promise<DashboardSnapshotJson> {
    if (this.latest != null && Date.now() - this.latest.at <= this.init.maxAgeMs) {
      return this.latest
    }
    return this.compute()
  }

  /**
   * Follow the snapshots on `stream` until `signal` aborts (the client went
   * away, the listener stops) or stop(): the current snapshot at once, then
   * each one that differs. Throws 429 past maxClients, before anything is sent.
   */
  async follow (stream: SseStream, signal: AbortSignal): Promise<void> {
    if (this.controller.signal.aborted) {
      throw new HttpApiError(HttpErrorCode.NOT_FOUND, 'the dashboard feed is stopped')
    }
    if (this.clients.size >= this.init.maxClients) {
      throw new HttpApiError(HttpErrorCode.TOO_MANY_REQUESTS, `${this.clients.size} dashboard event streams are open, the most this daemon holds at once; close one or poll GET /v1/dashboard/snapshot`)
    }
    const client: Client = { stream, lastKey: '', lastSentAt: 0, busy: false }
    this.clients.add(client)
    stream.start()
    try {
      await this.sendTo(client, await this.snapshot())
      this.schedule()
      const stopped = AbortSignal.any([signal, this.controller.signal])
      if (!stopped.aborted) {
        await new Promise<void>(resolve => { stopped.addEventListener('abort', () => { resolve() }, { once: true }) })
      }
    } finally {
      this.clients.delete(client)
      stream.end()
      if (this.clients.size === 0) {
        this.unschedule()
      }
    }
  }

  /** Something changed (a peer came or went, a block was written): recompute soon, when a stream is open. */
  kick (): void {
    if (this.clients.size === 0 || this.controller.signal.aborted) {
      return
    }
    const wait = Math.max(0, this.lastRunAt + this.init.minIntervalMs - Date.now())
    this.unschedule()
    this.timer = setTimeout(() => { this.tick() }, wait)
  }

  /** End every stream and the timer; snapshot() still answers. */
  stop (): void {
    this.unschedule()
    this.controller.abort(new Error('the dashboard feed is stopping'))
  }

  private schedule (): void {
    if (this.timer == null && !this.controller.signal.aborted) {
      this.timer = setTimeout(() => { this.tick() }, this.init.intervalMs)
    }
  }

  private unschedule (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private tick (): void {
    this.timer = undefined
    this.lastRunAt = Date.now()
    this.compute()
      .then(snapshot => { this.broadcast(snapshot) })
      .catch(err => { this.log.error('dashboard.tick.failed', { error: err instanceof Error ? err.message : String(err) }) })
      .finally(() => {
        if (this.clients.size > 0) {
          this.schedule()
        }
      })
  }

  private broadcast (snapshot: DashboardSnapshotJson): void {
    for (const client of this.clients) {
      if (!client.busy) {
        this.sendTo(client, snapshot).catch(err => { this.log('dashboard.send.failed', { error: err instanceof Error ? err.message : String(err) }) })
      }
    }
  }

  /** Send `snapshot` when it differs from the last one sent; else a comment once keepaliveMs passed. */
  private async sendTo (client: Client, snapshot: DashboardSnapshotJson): Promise<void> {
    const key = changeKey(snapshot)
    client.busy = true
    try {
      if (key !== client.lastKey) {
        client.lastKey = key
        client.lastSentAt = Date.now()
        await client.stream.send(snapshot, { event: 'snapshot', id: String(snapshot.seq) })
      } else if (Date.now() - client.lastSentAt >= this.init.keepaliveMs) {
        client.lastSentAt = Date.now()
        await client.stream.comment('nothing new')
      }
    } finally {
      client.busy = false
    }
  }

  private async compute (): Promise<DashboardSnapshotJson> {
    if (this.computing != null) {
      return this.computing
    }
    this.computing = this.computeNow().finally(() => { this.computing = undefined })
    return this.computing
  }

  private async computeNow (): Promise<DashboardSnapshotJson> {
    const names = Object.keys(this.sections)
    const results = await Promise.all(names.map(async name => this.section(name)))
    const snapshot: DashboardSnapshotJson = { at: Date.now(), seq: ++this.seq, errors: {} }
    for (const [i, name] of names.entries()) {
      const r = results[i]
      if ('error' in r) {
        snapshot.errors[name] = r.error
      } else if (r.value !== undefined) {
        snapshot[name] = r.value
      }
    }
    this.latest = snapshot
    return snapshot
  }

  /** One section within sectionTimeoutMs: its value, or why it has none this time. */
  private async section (name: string): Promise<{ value: unknown } | { error: string }> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.sectionTimeoutMs)])
    let onAbort: (() => void) | undefined
    try {
      const aborted = new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(new Error(`no answer within ${this.init.sectionTimeoutMs} ms`)) }
        signal.addEventListener('abort', onAbort, { once: true })
      })
      aborted.catch(() => {})
      return { value: await Promise.race([Promise.resolve().then(() => this.sections[name](signal)), aborted]) }
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err)
      this.log('dashboard.section.failed', { section: name, error })
      return { error }
    } finally {
      if (onAbort != null) {
        signal.removeEventListener('abort', onAbort)
      }
    }
  }
}

export function createDashboardFeed (components: DashboardFeedComponents, init?: DashboardFeedInit): DashboardFeed {
  return new DashboardFeed(components, init)
}
