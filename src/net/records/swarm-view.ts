/**
 * A periodically refreshed view of the live spans of one model: what routing
 * and `blyd peers` read. `spans()` is synchronous and drops spans whose
 * record expired since the last refresh; `refresh()` runs discovery now
 * (concurrent calls share one run).
 */
import { SWARM_DEFAULTS } from './constants.ts'
import { discoverSpans } from './discover.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import type { DiscoverSpansOptions, LiveSpan, SwarmLibp2p } from './discover.ts'
import type { BlyComponentLogger, BlyLogger } from '../../protocols/logger.ts'

export interface SwarmViewComponents {
  libp2p: SwarmLibp2p
  /** logs as bly:net:swarm-view */
  logger: BlyComponentLogger
}

export interface SwarmViewInit extends Omit<DiscoverSpansOptions, 'signal'> {
  /** refresh the view this often (default 30 s) */
  refreshIntervalMs?: number
  /** aborting it stops the view */
  signal?: AbortSignal
}

export class SwarmView {
  private readonly libp2p: SwarmLibp2p
  private readonly init: SwarmViewInit
  private readonly log: BlyLogger
  private readonly refreshIntervalMs: number
  private controller?: AbortController
  private timer?: ReturnType<typeof setTimeout>
  private inflight?: Promise<LiveSpan[]>
  private current: LiveSpan[]
  private onExternalAbort?: () => void
  /** unix ms of the latest completed refresh (0 before the first) */
  lastRefreshAt: number

  constructor (components: SwarmViewComponents, init: SwarmViewInit) {
    this.libp2p = components.libp2p
    this.init = init
    this.log = components.logger.forComponent('bly:net:swarm-view')
    this.refreshIntervalMs = init.refreshIntervalMs ?? SWARM_DEFAULTS.refreshIntervalMs
    if (!(this.refreshIntervalMs > 0)) {
      throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, 'refreshIntervalMs must be positive')
    }
    this.current = []
    this.lastRefreshAt = 0
  }

  get isStarted (): boolean {
    return this.controller != null
  }

  /** Run the first refresh and schedule the next ones. */
  async start (): Promise<void> {
    if (this.controller != null) {
      return
    }
    this.controller = new AbortController()
    if (this.init.signal != null) {
      this.onExternalAbort = () => { void this.stop() }
      this.init.signal.addEventListener('abort', this.onExternalAbort, { once: true })
    }
    await this.refresh().catch((err: Error) => { this.log.warn('first refresh failed - %e', err) })
  }

  async stop (): Promise<void> {
    const controller = this.controller
    if (controller == null) {
      return
    }
    this.controller = undefined
    if (this.onExternalAbort != null) {
      this.init.signal?.removeEventListener('abort', this.onExternalAbort)
      this.onExternalAbort = undefined
    }
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    controller.abort(new RecordError(RecordErrorCode.NOT_STARTED, 'swarm view stopped'))
    await this.inflight?.catch(() => {})
  }

  /** The spans of the latest refresh that are still unexpired, sorted by start layer. */
  spans (now: number = Date.now()): LiveSpan[] {
    return this.current.filter(s => s.expiresAt > now)
  }

  /** Discover now; resolves with the fresh spans. */
  async refresh (): Promise<LiveSpan[]> {
    const controller = this.controller
    if (controller == null) {
      throw new RecordError(RecordErrorCode.NOT_STARTED, 'the swarm view is not started')
    }
    if (this.inflight != null) {
      return this.inflight
    }
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    const run = (async () => {
      try {
        const spans = await discoverSpans(this.libp2p, { ...this.init, signal: controller.signal })
        this.current = spans
        this.lastRefreshAt = Date.now()
        this.log('refreshed: %d live spans', spans.length)
        return spans
      } finally {
        this.inflight = undefined
        if (this.controller === controller) {
          this.timer = setTimeout(() => {
            this.timer = undefined
            this.refresh().catch((err: Error) => { this.log.warn('refresh failed - %e', err) })
          }, this.refreshIntervalMs)
        }
      }
    })()
    this.inflight = run
    return run
  }
}

export function createSwarmView (components: SwarmViewComponents, init: SwarmViewInit): SwarmView {
  return new SwarmView(components, init)
}
