/**
 * Announces the span of decoder layers this node serves: puts its signed
 * node record under `/bly/node/<model>/<peer>` and provides one DHT key per
 * held layer, refreshes the record at TTL x refreshFraction (sooner, with
 * backoff, while no peer accepted it), serves the live record over
 * `/bly/record/1.0.0`, and on stop withdraws: a tombstone record
 * (expiresAt = now, higher seq) replaces the live one and the layer keys are
 * no longer re-provided.
 */
import { MODEL_ID_LENGTH, NODE_RECORD_VERSION, WEIGHTS_VERSION_LENGTH, signNodeRecord } from '../../protocols/node-record.ts'
import { equalBytes } from '../../protocols/pb-wire.ts'
import { ANNOUNCER_DEFAULTS, NODE_RECORD_LIMITS } from './constants.ts'
import { dhtHasPeers } from './dht-peers.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import { layerProviderKey, nodeRecordKey } from './keys.ts'
import { RecordServer } from './record-protocol.ts'
import { verifyNodeRecord } from './verify.ts'
import type { BlyComponentLogger, BlyLogger } from '../../protocols/logger.ts'
import type { NodeRecord } from '../../protocols/node-record.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'

/** Live numbers the announcer reads before signing each record. */
export interface SpanStats {
  /** tokens per second through the whole span, x1000 (integer) */
  throughputMilli: number
  /** sessions the node can still accept */
  freeSessions: number
  /** requests waiting */
  queueLength: number
}

export interface NodeAnnouncerComponents {
  libp2p: Libp2p<{ dht: KadDHT }>
  /** the node's identity key (the libp2p private key); it signs the records */
  privateKey: PrivateKey
  /** logs as bly:net:announcer */
  logger: BlyComponentLogger
}

export interface NodeAnnouncerInit {
  /** 32-byte model id */
  modelId: Uint8Array
  /** first decoder layer held */
  start: number
  /** one past the last decoder layer held */
  end: number
  holdsEmbedding?: boolean
  holdsHead?: boolean
  /** the node chose its span with `--layers auto` and may move (default false) */
  movable?: boolean
  /** bytes the node devotes to layers, its span included, for the planners of others (default 0 = not said) */
  memoryBytes?: number
  /** the weights version the span serves (32 bytes; protocols/versions.md), default not said; setWeightsVersion changes it */
  weightsVersion?: Uint8Array
  /** backend name ([a-z0-9._-], at most 32 bytes) */
  backend: string
  /** the GPU adapter the span runs on (printable ASCII, at most 128 bytes), default none said */
  adapter?: string
  /** live stats, read before every signature; zeros when absent or when it throws */
  stats?(): SpanStats | Promise<SpanStats>
  /** record lifetime (default 10 min) */
  ttlMs?: number
  /** refresh after ttlMs x this (default 1/3) */
  refreshFraction?: number
  /** first retry delay when no peer accepted the record (default 1 s, doubling) */
  retryMs?: number
  /** longest wait between retries while no peer accepts the record (default 30 s; never past the refresh interval) */
  retryMaxMs?: number
  /** re-provide the layer keys this often (default 30 min) */
  reprovideIntervalMs?: number
  /** bound of one put/provide round (default 30 s) */
  announceTimeoutMs?: number
  /** how long stop() waits for the tombstone put (default 5 s) */
  withdrawTimeoutMs?: number
  /** provide queries at once (default 4) */
  provideConcurrency?: number
  /** re-sign the directly served record when older than this (default 1 s) */
  liveRecordMaxAgeMs?: number
  /** put a tombstone on stop (default true); false leaves the record to expire */
  withdrawOnStop?: boolean
  /** serve the live record over /bly/record/1.0.0 (default true) */
  serveRecords?: boolean
  /** aborting it stops the announcer */
  signal?: AbortSignal
}

/** What one announcement round achieved. */
export interface AnnounceResult {
  seq: number
  expiresAt: number
  /** remote peers that stored the record */
  putPeers: number
  /** layers provided in this round to at least one remote peer */
  providedLayers: number
  /** layers whose provide reached no remote peer in this round (retried next round) */
  unprovidedLayers: number
}

type Required2<T> = { [K in keyof T]-?: T[K] }
type Settings = Required2<Omit<NodeAnnouncerInit, 'stats' | 'signal' | 'holdsEmbedding' | 'holdsHead' | 'movable' | 'memoryBytes' | 'weightsVersion' | 'adapter'>> & Pick<NodeAnnouncerInit, 'stats' | 'signal'> & { holdsEmbedding: boolean, holdsHead: boolean, movable: boolean, memoryBytes: number, weightsVersion: Uint8Array, adapter: string }

const ZERO_STATS: SpanStats = { throughputMilli: 0, freeSessions: 0, queueLength: 0 }

function toUint (value: unknown, max: number): number {
  const n = typeof value === 'number' && Number.isFinite(value) ? Math.floor(value) : 0
  return Math.min(Math.max(n, 0), max)
}

/** An adapter name the record may carry: printable ASCII, no outer spaces, at most maxAdapterBytes ('' = none). */
function checkAdapterName (adapter: string, bad: (what: string) => never): void {
  if (adapter.length > NODE_RECORD_LIMITS.maxAdapterBytes || !/^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/.test(adapter)) {
    bad(`bad adapter name ${JSON.stringify(adapter.slice(0, 40))}: printable ASCII, at most ${NODE_RECORD_LIMITS.maxAdapterBytes} bytes`)
  }
}

export class NodeAnnouncer {
  private readonly libp2p: Libp2p<{ dht: KadDHT }>
  private readonly privateKey: PrivateKey
  private readonly settings: Settings
  private readonly log: BlyLogger
  private readonly server: RecordServer
  private layers: number[]
  private readonly providedAt: Map<number, number>
  private controller?: AbortController
  private timer?: ReturnType<typeof setTimeout>
  private round: Promise<AnnounceResult | undefined>
  private running: boolean
  private lastSeq: number
  private retryDelay: number
  private live?: { bytes: Uint8Array, signedAt: number }
  private liveSigning?: Promise<Uint8Array>
  private onExternalAbort?: () => void
  /** the result of the latest completed round */
  lastResult?: AnnounceResult

  constructor (components: NodeAnnouncerComponents, init: NodeAnnouncerInit) {
    this.libp2p = components.libp2p
    this.privateKey = components.privateKey
    this.settings = {
      modelId: init.modelId,
      start: init.start,
      end: init.end,
      holdsEmbedding: init.holdsEmbedding ?? false,
      holdsHead: init.holdsHead ?? false,
      movable: init.movable ?? false,
      memoryBytes: init.memoryBytes ?? 0,
      weightsVersion: init.weightsVersion ?? new Uint8Array(0),
      backend: init.backend,
      adapter: init.adapter ?? '',
      stats: init.stats,
      signal: init.signal,
      ttlMs: init.ttlMs ?? ANNOUNCER_DEFAULTS.ttlMs,
      refreshFraction: init.refreshFraction ?? ANNOUNCER_DEFAULTS.refreshFraction,
      retryMs: init.retryMs ?? ANNOUNCER_DEFAULTS.retryMs,
      retryMaxMs: init.retryMaxMs ?? ANNOUNCER_DEFAULTS.retryMaxMs,
      reprovideIntervalMs: init.reprovideIntervalMs ?? ANNOUNCER_DEFAULTS.reprovideIntervalMs,
      announceTimeoutMs: init.announceTimeoutMs ?? ANNOUNCER_DEFAULTS.announceTimeoutMs,
      withdrawTimeoutMs: init.withdrawTimeoutMs ?? ANNOUNCER_DEFAULTS.withdrawTimeoutMs,
      provideConcurrency: init.provideConcurrency ?? ANNOUNCER_DEFAULTS.provideConcurrency,
      liveRecordMaxAgeMs: init.liveRecordMaxAgeMs ?? ANNOUNCER_DEFAULTS.liveRecordMaxAgeMs,
      withdrawOnStop: init.withdrawOnStop ?? true,
      serveRecords: init.serveRecords ?? true
    }
    this.checkSettings()
    if (!equalBytes(this.privateKey.publicKey.toMultihash().bytes, this.libp2p.peerId.toMultihash().bytes)) {
      throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, 'the private key is not the libp2p node\'s identity key')
    }
    this.log = components.logger.forComponent('bly:net:announcer')
    this.server = new RecordServer(this.libp2p, async (modelId) => this.serveLive(modelId))
    this.layers = []
    for (let l = init.start; l < init.end; l++) {
      this.layers.push(l)
    }
    this.providedAt = new Map()
    this.round = Promise.resolve(undefined)
    this.running = false
    this.lastSeq = 0
    this.retryDelay = this.settings.retryMs
  }

  private checkSettings (): void {
    const s = this.settings
    const bad = (what: string): never => {
      throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, what)
    }
    if (!(s.modelId instanceof Uint8Array) || s.modelId.length !== MODEL_ID_LENGTH) {
      bad(`model id must be ${MODEL_ID_LENGTH} bytes`)
    }
    if (!Number.isInteger(s.start) || !Number.isInteger(s.end) || s.start < 0 || s.end <= s.start || s.end > NODE_RECORD_LIMITS.maxLayers) {
      bad(`bad span [${s.start}, ${s.end})`)
    }
    if (s.weightsVersion.length !== 0 && s.weightsVersion.length !== WEIGHTS_VERSION_LENGTH) {
      bad(`a weights version is ${WEIGHTS_VERSION_LENGTH} bytes, got ${s.weightsVersion.length}`)
    }
    if (!/^[a-z0-9._-]+$/.test(s.backend) || s.backend.length > NODE_RECORD_LIMITS.maxBackendBytes) {
      bad(`bad backend name ${JSON.stringify(s.backend)}`)
    }
    checkAdapterName(s.adapter, bad)
    if (!(s.ttlMs > 0) || s.ttlMs > NODE_RECORD_LIMITS.maxTtlMs) {
      bad(`ttlMs must be in (0, ${NODE_RECORD_LIMITS.maxTtlMs}]`)
    }
    if (!(s.refreshFraction > 0 && s.refreshFraction < 1)) {
      bad('refreshFraction must be in (0, 1)')
    }
    if (![s.retryMs, s.retryMaxMs, s.announceTimeoutMs, s.withdrawTimeoutMs].every(ms => ms > 0) || !(s.provideConcurrency >= 1)) {
      bad('retryMs, retryMaxMs, announceTimeoutMs, withdrawTimeoutMs and provideConcurrency must be positive')
    }
  }

  get isStarted (): boolean {
    return this.running
  }

  get refreshIntervalMs (): number {
    return Math.max(1, Math.floor(this.settings.ttlMs * this.settings.refreshFraction))
  }

  /** Serve the record, run the first announcement round (bounded by announceTimeoutMs) and schedule refreshes. */
  async start (): Promise<void> {
    if (this.running) {
      return
    }
    if (this.settings.signal?.aborted === true) {
      throw new RecordError(RecordErrorCode.NOT_STARTED, 'the announcer\'s signal is already aborted')
    }
    this.running = true
    this.controller = new AbortController()
    if (this.settings.signal != null) {
      const signal = this.settings.signal
      this.onExternalAbort = () => { void this.stop() }
      signal.addEventListener('abort', this.onExternalAbort, { once: true })
    }
    if (this.settings.serveRecords) {
      await this.server.start()
    }
    await this.announce()
  }

  /** Stop refreshing; withdraw (tombstone + stop providing) unless withdrawOnStop is false. */
  async stop (): Promise<void> {
    if (!this.running) {
      return
    }
    this.running = false
    if (this.onExternalAbort != null) {
      this.settings.signal?.removeEventListener('abort', this.onExternalAbort)
      this.onExternalAbort = undefined
    }
    this.clearTimer()
    this.controller?.abort(new RecordError(RecordErrorCode.NOT_STARTED, 'announcer stopped'))
    await this.round.catch(() => {})
    await this.server.stop().catch((err: Error) => { this.log.warn('unhandle failed - %e', err) })
    this.live = undefined
    if (!this.settings.withdrawOnStop || this.libp2p.status !== 'started') {
      return
    }
    const signal = AbortSignal.timeout(this.settings.withdrawTimeoutMs)
    try {
      const now = Date.now()
      const bytes = await this.buildRecord(now, ZERO_STATS, now)
      const peers = await this.put(bytes, signal)
      this.log.info('withdrew %s: tombstone stored by %d peers', this.describe(), peers)
    } catch (err) {
      this.log.warn('withdrawal tombstone failed - %e', err)
    }
    for (const layer of this.layers) {
      await this.libp2p.services.dht.cancelReprovide(layerProviderKey(this.settings.modelId, layer)).catch(() => {})
    }
    this.providedAt.clear()
  }

  /**
   * Run one announcement round now (put the record, provide the layer keys
   * that are due) and reschedule the next. Rounds never overlap.
   */
  async announce (): Promise<AnnounceResult> {
    if (!this.running) {
      throw new RecordError(RecordErrorCode.NOT_STARTED, 'the announcer is not started')
    }
    const next = this.round.catch(() => undefined).then(async () => this.runRound())
    this.round = next
    const result = await next
    if (result == null) {
      throw new RecordError(RecordErrorCode.NOT_STARTED, 'the announcer stopped during the round')
    }
    return result
  }

  private async runRound (): Promise<AnnounceResult | undefined> {
    if (!this.running || this.controller == null) {
      return undefined
    }
    this.clearTimer()
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.settings.announceTimeoutMs)])
    let result: AnnounceResult | undefined
    try {
      const now = Date.now()
      const expiresAt = now + this.settings.ttlMs
      const bytes = await this.buildRecord(expiresAt, await this.readStats(), now)
      const seq = this.lastSeq
      const putPeers = await this.put(bytes, signal)
      const [providedLayers, unprovidedLayers] = await this.provideDue(signal)
      result = { seq, expiresAt, putPeers, providedLayers, unprovidedLayers }
      this.lastResult = result
      this.log('announced %s seq %d: %d peers stored the record, %d layers provided, %d not', this.describe(), seq, putPeers, providedLayers, unprovidedLayers)
    } catch (err) {
      if (!this.running) {
        return undefined
      }
      this.log.warn('announcement round failed - %e', err)
    }
    if (result == null) {
      result = { seq: this.lastSeq, expiresAt: 0, putPeers: 0, providedLayers: 0, unprovidedLayers: this.layers.length }
      this.lastResult = result
    }
    this.schedule(result.putPeers > 0 && result.unprovidedLayers === 0)
    return result
  }

  private schedule (succeeded: boolean): void {
    if (!this.running) {
      return
    }
    let delay = this.refreshIntervalMs
    if (succeeded) {
      this.retryDelay = this.settings.retryMs
    } else {
      delay = Math.min(this.retryDelay, this.settings.retryMaxMs, delay)
      this.retryDelay = Math.min(this.retryDelay * 2, this.settings.retryMaxMs, this.refreshIntervalMs)
    }
    this.clearTimer()
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.announce().catch(() => {})
    }, delay)
  }

  private clearTimer (): void {
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
  }

  private describe (): string {
    return `layers [${this.settings.start}, ${this.settings.end})`
  }

  private nextSeq (): number {
    // microseconds since the epoch, so a restarted node's records outrank its old ones
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000)
    return this.lastSeq
  }

  private async readStats (): Promise<SpanStats> {
    if (this.settings.stats == null) {
      return ZERO_STATS
    }
    try {
      const s = await this.settings.stats()
      return {
        throughputMilli: toUint(s?.throughputMilli, Number.MAX_SAFE_INTEGER),
        freeSessions: toUint(s?.freeSessions, 0xffffffff),
        queueLength: toUint(s?.queueLength, 0xffffffff)
      }
    } catch (err) {
      this.log.error('stats callback threw - %e', err)
      return ZERO_STATS
    }
  }

  /** Sign a record expiring at `expiresAt` and check it as any peer would. */
  private async buildRecord (expiresAt: number, stats: SpanStats, now: number): Promise<Uint8Array> {
    const s = this.settings
    const addrs = this.libp2p.getMultiaddrs()
      .map(ma => ma.bytes)
      .filter(b => b.length <= NODE_RECORD_LIMITS.maxAddrBytes)
      .slice(0, NODE_RECORD_LIMITS.maxAddrs)
    const record: NodeRecord = {
      version: NODE_RECORD_VERSION,
      peerId: this.libp2p.peerId.toMultihash().bytes,
      addrs,
      modelId: s.modelId,
      start: s.start,
      end: s.end,
      holdsEmbedding: s.holdsEmbedding,
      holdsHead: s.holdsHead,
      movable: s.movable,
      memoryBytes: s.memoryBytes,
      weightsVersion: s.weightsVersion,
      backend: s.backend,
      ...(s.adapter !== '' ? { adapter: s.adapter } : {}),
      throughputMilli: stats.throughputMilli,
      freeSessions: stats.freeSessions,
      queueLength: stats.queueLength,
      seq: this.nextSeq(),
      expiresAt
    }
    const bytes = await signNodeRecord(record, this.privateKey)
    await verifyNodeRecord(bytes, { peerId: this.libp2p.peerId, modelId: s.modelId, now })
    return bytes
  }

  /** Put `bytes` under the node key; returns how many remote peers stored exactly these bytes. */
  private async put (bytes: Uint8Array, signal: AbortSignal): Promise<number> {
    const key = nodeRecordKey(this.settings.modelId, this.libp2p.peerId)
    let stored = 0
    if (!dhtHasPeers(this.libp2p.services.dht)) {
      return 0
    }
    try {
      for await (const event of this.libp2p.services.dht.put(key, bytes, { signal })) {
        if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE' && event.record != null && equalBytes(event.record.value, bytes)) {
          stored++
        }
      }
    } catch (err) {
      if (signal.aborted && stored > 0) {
        return stored
      }
      throw err
    }
    return stored
  }

  /** Provide every layer not provided (to a remote peer) within reprovideIntervalMs. */
  private async provideDue (signal: AbortSignal): Promise<[number, number]> {
    const now = Date.now()
    const due = this.layers.filter(l => now - (this.providedAt.get(l) ?? -Infinity) >= this.settings.reprovideIntervalMs)
    if (!dhtHasPeers(this.libp2p.services.dht)) {
      return [0, due.length]
    }
    let provided = 0
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < due.length && !signal.aborted) {
        const layer = due[next++]
        let reached = 0
        try {
          for await (const event of this.libp2p.services.dht.provide(layerProviderKey(this.settings.modelId, layer), { signal })) {
            if (event.name === 'PEER_RESPONSE' && event.messageName === 'ADD_PROVIDER') {
              reached++
            }
          }
        } catch (err) {
          this.log('provide of layer %d failed - %e', layer, err)
        }
        if (reached > 0) {
          this.providedAt.set(layer, now)
          provided++
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.settings.provideConcurrency, due.length) }, worker))
    return [provided, due.length - provided]
  }

  /**
   * Announce layers [start, end) from now on (a re-planned node moving its
   * span): the record names the new span at once (a new round, a higher
   * seq) and the layer keys it no longer holds are not re-provided.
   */
  async moveTo (start: number, end: number): Promise<AnnounceResult | undefined> {
    const old = this.layers
    const before = { start: this.settings.start, end: this.settings.end }
    Object.assign(this.settings, { start, end })
    try {
      this.checkSettings()
    } catch (err) {
      Object.assign(this.settings, before)
      throw err
    }
    this.layers = []
    for (let l = start; l < end; l++) {
      this.layers.push(l)
    }
    this.live = undefined
    for (const layer of old) {
      if (layer < start || layer >= end) {
        this.providedAt.delete(layer)
        await this.libp2p.services.dht.cancelReprovide(layerProviderKey(this.settings.modelId, layer)).catch(() => {})
      }
    }
    return this.running ? this.announce() : undefined
  }

  /**
   * Announce weights version `version` (32 bytes) from now on (the span
   * moved to a newly accepted version): the record names it at once (a new
   * round, a higher seq). The span and the layer keys are unchanged.
   */
  async setWeightsVersion (version: Uint8Array): Promise<AnnounceResult | undefined> {
    if (version.length !== WEIGHTS_VERSION_LENGTH) {
      throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, `a weights version is ${WEIGHTS_VERSION_LENGTH} bytes, got ${version.length}`)
    }
    this.settings.weightsVersion = Uint8Array.from(version)
    this.live = undefined
    return this.running ? this.announce() : undefined
  }

  /**
   * This node's live signed record (what /bly/record/1.0.0 serves), or
   * undefined when stopped. Pass it as `localRecord` to discoverSpans /
   * SwarmView so a node sees its own span without a DHT round trip.
   */
  async record (): Promise<Uint8Array | undefined> {
    return this.serveLive(this.settings.modelId)
  }

  /** The record served over /bly/record/1.0.0: re-signed with fresh stats when older than liveRecordMaxAgeMs. */
  private async serveLive (modelId: Uint8Array): Promise<Uint8Array | undefined> {
    if (!this.running || !equalBytes(modelId, this.settings.modelId)) {
      return undefined
    }
    const now = Date.now()
    if (this.live != null && now - this.live.signedAt < this.settings.liveRecordMaxAgeMs) {
      return this.live.bytes
    }
    if (this.liveSigning == null) {
      this.liveSigning = (async () => {
        const signedAt = Date.now()
        const bytes = await this.buildRecord(signedAt + this.settings.ttlMs, await this.readStats(), signedAt)
        this.live = { bytes, signedAt }
        return bytes
      })().finally(() => {
        this.liveSigning = undefined
      })
    }
    return this.liveSigning
  }
}

/** Create (not start) an announcer for `init.modelId` layers [init.start, init.end). */
export function createNodeAnnouncer (components: NodeAnnouncerComponents, init: NodeAnnouncerInit): NodeAnnouncer {
  return new NodeAnnouncer(components, init)
}
