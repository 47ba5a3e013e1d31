/**
 * Serves one span of decoder layers of one model to the mesh. In the
 * background it waits for the model's manifest (it may arrive over the
 * network after start), settles the span (`START-END`, or `auto`: see
 * swarm-plan.ts), marks those units wanted by the payload policy, waits for
 * their layer blocks and payloads, loads the layers through the chain loader,
 * starts the stage server (/bly/infer/1.0.0, plus its direct TLS channel
 * unless `directChannel` is false) and the announcer (signed node
 * record + per-layer provider keys). stop() withdraws the announcement first,
 * then stops the stage and frees the weights; call it before libp2p stops.
 *
 * `auto` re-plans every `replanMs` (span-replan.ts). When the planner moves
 * this node, it switches spans without a gap: it fetches and loads the new
 * layers while the old stage serves, starts the new stage (it takes the
 * stage protocols over: protocol-handover.ts), announces the new span, then
 * lets the old stage's open sessions finish (at most `drainMs`; the rest
 * fail over) before it stops the old stage and frees the old weights.
 *
 * Weights versions (with `versions` injected): the span loads in the
 * model's live version (protocols/versions.md) and the stage and the node
 * record name it. Every `versionPollMs` it reads the live version again
 * (the fold, cached while no block arrives); when a proposal was accepted,
 * it switches the same way it moves: it waits for the new version's delta
 * payloads of its units (asking peers for them), loads the span in the new
 * version beside the old, starts the new stage (new sessions, which pin the
 * new version, go to it), announces the new version, then lets the old
 * stage's sessions (pinned to the old version) finish, at most `drainMs`,
 * and frees the old weights. Moves and switches run one at a time and
 * each returns only once the old copy is freed, so the span's weights are
 * held at most twice (span-weights.ts states the bound; status() reports
 * it under `weights`).
 */
import { freemem } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { findUnitBlock, loadLayerRangeFromChain, loadModelManifest } from '../model/chain-loader.ts'
import { createNodeAnnouncer } from '../net/records/announcer.ts'
import { dhtHasPeers } from '../net/records/dht-peers.ts'
import { discoverSpans } from '../net/records/discover.ts'
import { PipelineError, PipelineErrorCode } from '../pipeline/errors.ts'
import { createStageServer } from '../pipeline/stage-server.ts'
import { InferErrorCode } from '../protocols/infer.ts'
import { SPAN_SERVER_DEFAULTS } from './constants.ts'
import { MeshError, MeshErrorCode } from './errors.ts'
import { LocalStage } from './local-stage.ts'
import { ProtocolOwners } from './protocol-handover.ts'
import { decideReplan } from './span-replan.ts'
import { parseSpan } from './span-spec.ts'
import { missingSpanDeltas, spanF32Bytes, spanWeightsBound } from './span-weights.ts'
import { chooseAutoSpan } from './swarm-plan.ts'
import type { PayloadPolicy } from './payload-policy.ts'
import type { ReplanDecision } from './span-replan.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { ModelVersions } from '../model/model-versions.ts'
import type { LayerRange } from '../model/qwen3/layer-range.ts'
import type { WeightsVersion } from '../model/weights-version.ts'
import type { BlyNetwork } from '../net/network.ts'
import type { NodeAnnouncer, SpanStats } from '../net/records/announcer.ts'
import type { StageFaults } from '../pipeline/fault-injection.ts'
import type { StageReceipts, StageServer } from '../pipeline/stage-server.ts'
import type { ReplanJson, ServingJson, VersionSwitchJson } from '../protocols/ipc-mesh.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface SpanServerComponents {
  store: ChainStoreApi
  network: BlyNetwork
  /** the node's identity key: it signs the node record */
  privateKey: PrivateKey
  policy: PayloadPolicy
  /** the compute backend's name, for the record */
  backend(): string
  /** the GPU adapter the span runs on, for the record ('' or absent: none) */
  adapter?(): string
  /** worker threads for the span's layers (InferenceService.workersFor fits); 0 when absent */
  workersFor?(config: ModelManifest['qwen3']): number
  /** logs as bly:mesh:span-server; the stage server and announcer get it too */
  logger: BlyComponentLogger
  /**
   * The models' weights versions (learning/model-versions.ts): the span is
   * served in the live version and follows it. Absent: the imported
   * weights, no version named anywhere.
   */
  versions?: ModelVersions
  /** the stage's receipt handler and admission rule (docs/ledger.md) */
  receipts?: { stage?: StageReceipts, priorityFor?(client: string, modelId: string, requested: number): number }
}

export interface SpanServerInit {
  /** model manifest block id, 64 hex characters */
  model: string
  /** "START-END" (0-based, END exclusive) or "auto" */
  layers: string
  /** lifetime of the node record (the announcer's default when absent) */
  recordTtlMs?: number
  pollMs?: number
  autoSettleMs?: number
  /** `--layers auto`: bytes this node can devote to layers (default os.freemem() when choosing) */
  memoryBytes?: number
  /** `--layers auto`: holders wanted per layer (default 1) */
  replicas?: number
  /** `--layers auto`: re-plan this often, in ms (default SPAN_SERVER_DEFAULTS.replanMs); 0 = never */
  replanMs?: number
  /** after a move or a version switch, how long the old stage may finish its open sessions before it stops (default SPAN_SERVER_DEFAULTS.drainMs) */
  drainMs?: number
  /** read the live weights version this often, in ms (default SPAN_SERVER_DEFAULTS.versionPollMs) */
  versionPollMs?: number
  /** a re-plan moves this node only for a bottleneck gain above this fraction (default the planner's, 0.15) */
  minGain?: number
  /**
   * The stage's direct TLS data channel: false = libp2p streams only; else
   * its bind host (default 0.0.0.0; offers then name the address the client
   * reached libp2p at) and port (default 0 = ephemeral)
   */
  directChannel?: false | { host?: string, port?: number }
  /** the stage's bounds: sessions at once and KV-cache positions over all of them (stage server defaults when absent) */
  stageLimits?: StageLimits
  /** FAULT INJECTION FOR TESTS ONLY, passed to the stage server (see pipeline/fault-injection.ts) */
  faults?: StageFaults
}

export interface StageLimits {
  maxSessions?: number
  maxCachePositions?: number
}

export type SpanServerState = ServingJson['state']

/** A stage and the weights it serves. */
interface Served {
  span: { start: number, end: number }
  range: LayerRange
  stage: StageServer
  version?: WeightsVersion
}

export class SpanServer {
  readonly model: string
  readonly layersSpec: string
  private readonly components: SpanServerComponents
  private readonly init: SpanServerInit
  private readonly pollMs: number
  private readonly kicked: Map<string, number>
  private controller?: AbortController
  /** settles once serving starts (or fails) */
  private run?: Promise<void>
  /** the re-plan loop (`auto` only), after `run` */
  private replanning?: Promise<void>
  private stateValue: SpanServerState
  private detail?: string
  private span?: { start: number, end: number }
  private rangeValue?: LayerRange
  private stage?: StageServer
  private versionValue?: WeightsVersion
  /** this node's own generations running on each loaded range (LocalStage), so a range is freed only after its last */
  private readonly localSessions: Map<LayerRange, number>
  /** moves and version switches, one at a time */
  private transitions: Promise<void>
  /** the version switch in progress: where it stands */
  private switching?: { version: string, since: number, detail: string }
  private lastSwitch?: VersionSwitchJson
  /** the version loop: settles when it stops */
  private versionWatch?: Promise<void>
  private announcerValue?: NodeAnnouncer
  private readonly owners: ProtocolOwners
  /** old stages finishing their sessions after a move */
  private readonly retiring: Set<Served>
  private lastReplan?: ReplanJson
  /** the move the last re-plan proposed, waiting for the next one to confirm it */
  private proposed?: { start: number, end: number }
  private lastMove?: ReplanJson
  private manifest?: ModelManifest
  private readonly log: BlyLogger

  constructor (components: SpanServerComponents, init: SpanServerInit) {
    if (!/^[0-9a-f]{64}$/.test(init.model)) {
      throw new MeshError(MeshErrorCode.BAD_SPAN, `model must be a 64-character hex block id, got ${JSON.stringify(init.model)}`)
    }
    this.components = components
    this.log = components.logger.forComponent('bly:mesh:span-server')
    this.init = init
    this.model = init.model
    this.layersSpec = init.layers
    this.pollMs = init.pollMs ?? SPAN_SERVER_DEFAULTS.pollMs
    this.kicked = new Map()
    this.stateValue = 'stopped'
    this.owners = new ProtocolOwners(components.network.libp2p)
    this.retiring = new Set()
    this.localSessions = new Map()
    this.transitions = Promise.resolve()
    const replanMs = init.replanMs ?? SPAN_SERVER_DEFAULTS.replanMs
    if (!Number.isSafeInteger(replanMs) || replanMs < 0) {
      throw new MeshError(MeshErrorCode.BAD_SPAN, `replanMs must be a whole number of ms >= 0, got ${replanMs}`)
    }
  }

  get state (): SpanServerState {
    return this.stateValue
  }

  /** The layers served, once loaded (the mesh runs its own hops on them). */
  get range (): LayerRange | undefined {
    return this.stateValue === 'serving' ? this.rangeValue : undefined
  }

  get announcer (): NodeAnnouncer | undefined {
    return this.announcerValue
  }

  /** The weights version served (its id, hex), once loaded; undefined without versions. */
  get version (): string | undefined {
    return this.stateValue === 'serving' ? this.versionValue?.id : undefined
  }

  /**
   * A stage in this process over the span served now, for a hop of this
   * node's own generation (libp2p does not dial itself): layers [hop.start,
   * hop.end) of the span, in weights version `version` (when given). The
   * span's weights are kept until the stage closes. Throws PipelineError
   * REMOTE (remote code WRONG_VERSION) when the span serves another version,
   * MeshError NO_ROUTE when it no longer holds those layers.
   */
  openLocal (hop: { start: number, end: number }, version?: string): LocalStage {
    const range = this.range
    if (range == null || hop.start < range.start || hop.end > range.end) {
      throw new MeshError(MeshErrorCode.NO_ROUTE, `this node no longer serves layers [${hop.start}, ${hop.end})`)
    }
    if (version != null && version !== this.versionValue?.id) {
      throw new PipelineError(PipelineErrorCode.REMOTE, `this node serves weights version ${this.versionValue?.id ?? '(none named)'} of model ${this.model}, not ${version}`, { remoteCode: InferErrorCode.WRONG_VERSION })
    }
    this.localSessions.set(range, (this.localSessions.get(range) ?? 0) + 1)
    return new LocalStage(range, { start: hop.start, end: hop.end }, () => {
      const n = (this.localSessions.get(range) ?? 1) - 1
      if (n > 0) {
        this.localSessions.set(range, n)
      } else {
        this.localSessions.delete(range)
      }
    })
  }

  /** Starts the background work; resolves at once. */
  async start (): Promise<void> {
    if (this.controller != null) {
      return
    }
    this.controller = new AbortController()
    const signal = this.controller.signal
    this.stateValue = 'waiting-manifest'
    const serving = this.serve(signal)
    this.run = serving.then(() => {}, (err: any) => {
      if (signal.aborted) {
        return
      }
      this.stateValue = 'error'
      this.detail = String(err?.message ?? err)
      this.log.error('serve.failed', { model: this.model, layers: this.layersSpec, error: this.detail })
    })
    this.replanning = serving.then(async ({ manifest, announcer }) => this.replanLoop(manifest, announcer, signal)).catch(() => {})
    this.versionWatch = serving.then(async ({ manifest, announcer }) => this.versionLoop(manifest, announcer, signal)).catch(() => {})
  }

  /** Resolves once serving (or throws when serving failed or stopped). */
  async ready (): Promise<void> {
    await this.run
    if (this.stateValue !== 'serving') {
      throw new MeshError(MeshErrorCode.NOT_STARTED, `not serving: ${this.stateValue}${this.detail != null ? ` (${this.detail})` : ''}`)
    }
  }

  /** Withdraws the announcement, stops the stage server and frees the weights. */
  async stop (): Promise<void> {
    const controller = this.controller
    if (controller == null) {
      return
    }
    this.controller = undefined
    controller.abort(new MeshError(MeshErrorCode.NOT_STARTED, 'span server stopped'))
    await this.run?.catch(() => {})
    await this.replanning
    await this.versionWatch
    await this.transitions
    await this.announcerValue?.stop().catch(() => {})
    this.announcerValue = undefined
    await this.stage?.stop().catch(() => {})
    this.stage = undefined
    await this.rangeValue?.close().catch(() => {})
    this.rangeValue = undefined
    this.versionValue = undefined
    for (const old of [...this.retiring]) {
      await this.retire(old)
    }
    this.localSessions.clear()
    this.switching = undefined
    this.stateValue = 'stopped'
  }

  status (): ServingJson {
    const stats = this.stage?.stats
    return {
      model: this.model,
      layers: this.layersSpec,
      state: this.stateValue,
      ...(this.span != null ? { start: this.span.start, end: this.span.end } : {}),
      ...(this.detail != null ? { detail: this.detail } : {}),
      ...(this.rangeValue != null ? { workers: this.rangeValue.workers } : {}),
      ...(stats != null
        ? {
            sessions: stats.sessions,
            maxSessions: stats.maxSessions,
            peakSessions: stats.peakSessions,
            reservedPositions: stats.reservedPositions,
            maxCachePositions: stats.maxCachePositions,
            peakReservedPositions: stats.peakReservedPositions,
            queuedSteps: stats.queuedSteps,
            busy: stats.busy,
            opened: stats.opened,
            steps: stats.steps,
            positions: stats.positions,
            computeMs: Math.round(stats.computeMs)
          }
        : {}),
      ...(this.announcerValue?.lastResult != null ? { announced: { seq: this.announcerValue.lastResult.seq, expiresAt: this.announcerValue.lastResult.expiresAt, putPeers: this.announcerValue.lastResult.putPeers } } : {}),
      ...(this.lastReplan != null ? { replan: this.lastReplan } : {}),
      ...(this.lastMove != null ? { lastMove: this.lastMove } : {}),
      ...this.versionStatus()
    }
  }

  /** status()'s version fields: the version served, the memory its weights take and the bound, draining copies, the switch in progress and the last one. */
  private versionStatus (): Partial<ServingJson> {
    const manifest = this.manifest
    const out: Partial<ServingJson> = {}
    if (this.versionValue != null) {
      out.version = this.versionValue.id
    }
    if (manifest != null && this.span != null && this.rangeValue != null) {
      const copies = [{ span: this.span }, ...this.retiring]
      out.weights = {
        bytes: copies.reduce((n, c) => n + spanF32Bytes(manifest, c.span), 0),
        copies: copies.length,
        spanBytes: spanF32Bytes(manifest, this.span),
        boundBytes: spanWeightsBound(manifest, this.span)
      }
    }
    if (this.retiring.size > 0) {
      out.draining = [...this.retiring].map(old => ({
        ...(old.version != null ? { version: old.version.id } : {}),
        start: old.span.start,
        end: old.span.end,
        sessions: old.stage.stats.sessions + (this.localSessions.get(old.range) ?? 0)
      }))
    }
    if (this.switching != null) {
      out.switching = { ...this.switching }
    }
    if (this.lastSwitch != null) {
      out.lastSwitch = this.lastSwitch
    }
    return out
  }

  private async serve (signal: AbortSignal): Promise<{ manifest: ModelManifest, announcer: NodeAnnouncer }> {
    const { store, network } = this.components
    const modelId = Uint8Array.from(Buffer.from(this.model, 'hex'))
    this.detail = 'the manifest block and its payload'
    const manifest = await this.poll(signal, async () => {
      const block = await store.get(modelId)
      if (block == null) {
        return undefined
      }
      if (!block.payloadComplete) {
        this.kick(block.id)
        return undefined
      }
      return loadModelManifest(store, modelId)
    })
    this.manifest = manifest
    const numLayers = manifest.qwen3.numLayers
    const span = this.layersSpec === 'auto' ? await this.autoSpan(manifest, signal) : parseSpan(this.layersSpec, numLayers)
    this.span = span
    this.log.info('serve.span', { model: this.model, start: span.start, end: span.end, layers: numLayers })
    const version = await this.components.versions?.resolve(manifest)
    const range = await this.fetchAndLoad(manifest, span, signal, false, version)
    this.rangeValue = range
    this.versionValue = version
    if (this.init.faults != null) {
      this.log.error('serve.fault-injection', { model: this.model, warning: 'test-only fault injection is ON', stepDelayMs: this.init.faults.stepDelayMs, corruptFromStep: this.init.faults.corruptFromStep, corruptOnSignal: this.init.faults.corruptOnSignal, slowOnSignal: this.init.faults.slowOnSignal, slowOnSignalFactor: this.init.faults.slowOnSignalFactor })
    }
    this.stage = await this.startStage(range, version)
    const announcer = createNodeAnnouncer({ libp2p: network.libp2p, privateKey: this.components.privateKey, logger: this.components.logger }, {
      modelId,
      start: span.start,
      end: span.end,
      ...(version != null ? { weightsVersion: Uint8Array.from(Buffer.from(version.id, 'hex')) } : {}),
      // what the planners of other nodes read: whether this node may move, and its memory when configured
      movable: this.layersSpec === 'auto',
      memoryBytes: this.init.memoryBytes ?? 0,
      backend: this.components.backend(),
      adapter: this.components.adapter?.() ?? '',
      ttlMs: this.init.recordTtlMs,
      stats: () => this.spanStats()
    })
    this.announcerValue = announcer
    this.stateValue = 'serving'
    this.log.info('serve.started', { model: this.model, start: span.start, end: span.end, workers: range.workers, version: version?.id })
    await announcer.start()
    return { manifest, announcer }
  }

  /** `auto`: re-plan every replanMs until stopped (a failed re-plan is logged and retried next time). */
  private async replanLoop (manifest: ModelManifest, announcer: NodeAnnouncer, signal: AbortSignal): Promise<void> {
    const replanMs = this.init.replanMs ?? SPAN_SERVER_DEFAULTS.replanMs
    if (this.layersSpec !== 'auto' || replanMs === 0) {
      return
    }
    while (true) {
      await sleep(replanMs, undefined, { signal })
      try {
        await this.exclusive(async () => this.replan(manifest, announcer, signal))
      } catch (err: any) {
        signal.throwIfAborted()
        const error = String(err?.message ?? err)
        this.lastReplan = { at: Date.now(), moved: false, gain: 0, reason: 'error', error }
        this.log.warn('serve.replan.failed', { model: this.model, error })
      }
    }
  }

  /**
   * Marks the span's units wanted (units 1..L are decoder layers 0..L-1),
   * waits for their blocks and, in `version`, for the payloads of the
   * version's deltas of those units, and loads them in that version.
   * `moving`: the span served now stays up meanwhile (a move or a switch).
   */
  private async fetchAndLoad (manifest: ModelManifest, span: { start: number, end: number }, signal: AbortSignal, moving = false, version?: WeightsVersion): Promise<LayerRange> {
    const { store, policy } = this.components
    policy.serve(this.model, span.start + 1, span.end + 1)
    const what = moving ? `${this.switching != null ? `switching to version ${this.switching.version.slice(0, 16)}` : `moving to [${span.start}, ${span.end})`}: ` : ''
    if (!moving) {
      this.stateValue = 'waiting-blocks'
    }
    const units = manifest.units.filter(u => u.unit >= span.start + 1 && u.unit < span.end + 1)
    await this.poll(signal, async () => {
      let missing = 0
      for (const unit of units) {
        const block = await findUnitBlock(store, manifest, unit)
        if (block == null || !block.payloadComplete) {
          missing++
          if (block != null) {
            this.kick(block.id)
          }
        }
      }
      const deltas = version != null ? await missingSpanDeltas(store, version, span) : []
      for (const d of deltas) {
        if (d.stored) {
          this.kick(Uint8Array.from(Buffer.from(d.id, 'hex')))
        }
      }
      this.detail = `${what}${missing} of ${units.length} layer blocks${deltas.length > 0 ? `, ${deltas.length} delta payloads of version ${version?.id.slice(0, 16) ?? ''}` : ''}`
      if (this.switching != null) {
        this.switching.detail = this.detail
      }
      return missing === 0 && deltas.length === 0 ? true : undefined
    })
    if (moving) {
      this.detail = `${what}loading`
    } else {
      this.detail = undefined
      this.stateValue = 'loading'
    }
    const workers = this.components.workersFor?.(manifest.qwen3) ?? 0
    const range = await loadLayerRangeFromChain(store, manifest, { start: span.start, end: span.end, workers }, version)
    if (signal.aborted) {
      await range.close()
      signal.throwIfAborted()
    }
    return range
  }

  /** A started stage server over `range` (weights version `version`); it takes the stage protocols over from any stage before it. */
  private async startStage (range: LayerRange, version?: WeightsVersion): Promise<StageServer> {
    const direct = this.init.directChannel
    const libp2p = this.owners.forStage()
    const stage = createStageServer({ libp2p, logger: this.components.logger }, {
      modelId: this.model,
      ...(version != null ? { weightsVersion: version.id } : {}),
      layers: range,
      directChannel: direct === false ? false : { host: direct?.host ?? '0.0.0.0', port: direct?.port ?? 0 },
      ...this.init.stageLimits,
      ...(this.init.faults != null ? { faults: this.init.faults } : {}),
      ...(this.components.receipts?.stage != null ? { receipts: this.components.receipts.stage } : {}),
      ...(this.components.receipts?.priorityFor != null ? { priorityFor: this.components.receipts.priorityFor } : {})
    })
    await stage.start()
    await this.owners.releaseOthers(libp2p.token)
    return stage
  }

  /** One re-plan (span-replan.ts); moves this node when the planner says so. */
  private async replan (manifest: ModelManifest, announcer: NodeAnnouncer, signal: AbortSignal): Promise<void> {
    const { libp2p } = this.components.network
    const spans = await discoverSpans(libp2p, { modelId: manifest.id, layers: manifest.qwen3.numLayers, signal, localRecord: async () => announcer.record() })
    const decision = decideReplan({
      layerBytes: layerBytesOf(manifest),
      spans,
      self: libp2p.peerId.toString(),
      memoryBytes: this.init.memoryBytes ?? freemem()
    }, { replicas: this.init.replicas ?? 1, ...(this.init.minGain != null ? { minGain: this.init.minGain } : {}) })
    // a move must be proposed by two re-plans in a row: one view missing some records
    // (a peer slow to answer, a record in flight) must not move the node
    const to = decision.moved ? decision.to : undefined
    const confirmed = to != null && this.proposed != null && this.proposed.start === to.start && this.proposed.end === to.end
    this.proposed = confirmed ? undefined : to
    if (to != null && !confirmed) {
      this.lastReplan = { ...replanJson(decision), moved: false, reason: 'confirming' }
      return
    }
    this.lastReplan = replanJson(decision)
    if (to != null) {
      await this.move(manifest, announcer, decision, to, signal)
    }
  }

  /** Serve `to` instead of the current span (see the file comment). */
  private async move (manifest: ModelManifest, announcer: NodeAnnouncer, decision: ReplanDecision, to: { start: number, end: number }, signal: AbortSignal): Promise<void> {
    const span = this.span
    const range = this.rangeValue
    const stage = this.stage
    if (span == null || range == null || stage == null) {
      return
    }
    const from = { start: span.start, end: span.end }
    this.log.info('serve.moving', { model: this.model, fromStart: from.start, fromEnd: from.end, toStart: to.start, toEnd: to.end, gain: decision.gain, reason: decision.reason })
    let next: LayerRange
    try {
      next = await this.fetchAndLoad(manifest, to, signal, true, this.versionValue)
    } finally {
      this.detail = undefined
    }
    let nextStage: StageServer
    try {
      nextStage = await this.startStage(next, this.versionValue)
    } catch (err) {
      await next.close().catch(() => {})
      throw err
    }
    const old: Served = { span: from, range, stage, ...(this.versionValue != null ? { version: this.versionValue } : {}) }
    this.retiring.add(old)
    this.stage = nextStage
    this.rangeValue = next
    this.span = { start: to.start, end: to.end }
    this.components.policy.unserve(this.model, from.start + 1, from.end + 1)
    this.components.policy.serve(this.model, to.start + 1, to.end + 1)
    this.lastMove = replanJson(decision)
    this.log.info('serve.moved', { model: this.model, fromStart: from.start, fromEnd: from.end, toStart: to.start, toEnd: to.end, gain: decision.gain, reason: decision.reason, workers: next.workers })
    await announcer.moveTo(to.start, to.end).catch((err: Error) => {
      this.log.warn('serve.announce.failed', { model: this.model, error: err.message })
    })
    await this.drain(old, signal)
    await this.retire(old)
  }

  /** Waits (at most drainMs, or until stopped) for the old stage's open sessions to end. */
  private async drain (old: Served, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + (this.init.drainMs ?? SPAN_SERVER_DEFAULTS.drainMs)
    while ((old.stage.stats.sessions > 0 || (this.localSessions.get(old.range) ?? 0) > 0) && Date.now() < deadline && !signal.aborted) {
      await sleep(this.pollMs, undefined, { signal }).catch(() => {})
    }
  }

  /** Stops an old stage (its sessions left fail over) and frees its weights. */
  private async retire (old: Served): Promise<void> {
    if (!this.retiring.delete(old)) {
      return
    }
    await old.stage.stop().catch(() => {})
    await old.range.close().catch(() => {})
    this.localSessions.delete(old.range)
    this.log.info('serve.retired', { model: this.model, start: old.span.start, end: old.span.end, version: old.version?.id })
  }

  /** Runs `fn` after every move or switch before it (one transition at a time). */
  private async exclusive (fn: () => Promise<void>): Promise<void> {
    const run = this.transitions.then(fn)
    this.transitions = run.catch(() => {})
    return run
  }

  /** With versions: every versionPollMs, switch to the live version when it changed (a failed try is logged and tried again). */
  private async versionLoop (manifest: ModelManifest, announcer: NodeAnnouncer, signal: AbortSignal): Promise<void> {
    const versions = this.components.versions
    if (versions == null) {
      return
    }
    const pollMs = this.init.versionPollMs ?? SPAN_SERVER_DEFAULTS.versionPollMs
    let lastError = ''
    while (true) {
      await sleep(pollMs, undefined, { signal })
      try {
        const live = await versions.resolve(manifest)
        if (live.id !== this.versionValue?.id) {
          await this.exclusive(async () => this.switchVersion(manifest, announcer, versions, signal))
        }
        lastError = ''
      } catch (err: any) {
        signal.throwIfAborted()
        const error = String(err?.message ?? err)
        if (error !== lastError) {
          this.log.warn('serve.version.failed', { model: this.model, error })
          lastError = error
        }
        if (this.switching != null) {
          this.switching.detail = `failed, retrying: ${error}`
        }
      }
    }
  }

  /** Serve the live version instead of the one served now (see the file comment); returns once the old copy is freed. */
  private async switchVersion (manifest: ModelManifest, announcer: NodeAnnouncer, versions: ModelVersions, signal: AbortSignal): Promise<void> {
    const live = await versions.resolve(manifest)
    const span = this.span
    const range = this.rangeValue
    const stage = this.stage
    const from = this.versionValue
    if (live.id === from?.id || span == null || range == null || stage == null) {
      return
    }
    const t0 = Date.now()
    this.switching = { version: live.id, since: t0, detail: 'loading' }
    this.log.info('serve.version.switching', { model: this.model, from: from?.id, to: live.id, start: span.start, end: span.end })
    let next: LayerRange
    let nextStage: StageServer
    try {
      next = await this.fetchAndLoad(manifest, span, signal, true, live)
      try {
        nextStage = await this.startStage(next, live)
      } catch (err) {
        await next.close().catch(() => {})
        throw err
      }
    } finally {
      this.detail = undefined
      this.switching = undefined
    }
    const old: Served = { span: { ...span }, range, stage, ...(from != null ? { version: from } : {}) }
    this.retiring.add(old)
    this.stage = nextStage
    this.rangeValue = next
    this.versionValue = live
    const loadedMs = Date.now() - t0
    this.log.info('serve.version.switched', { model: this.model, from: from?.id, to: live.id, loadedMs, draining: old.stage.stats.sessions + (this.localSessions.get(range) ?? 0) })
    this.lastSwitch = { at: t0, ...(from != null ? { from: from.id } : {}), to: live.id, loadedMs }
    // the record names the new version at once (the live record served directly is re-signed now); the DHT put runs beside the drain
    const announced = announcer.setWeightsVersion(Uint8Array.from(Buffer.from(live.id, 'hex'))).catch((err: Error) => {
      this.log.warn('serve.announce.failed', { model: this.model, error: err.message })
    })
    await this.drain(old, signal)
    await announced
    await this.retire(old)
    this.lastSwitch = { ...this.lastSwitch, drainedMs: Date.now() - t0 }
  }

  private spanStats (): SpanStats {
    const s = this.stage?.stats
    if (s == null) {
      return { throughputMilli: 0, freeSessions: 0, queueLength: 0 }
    }
    return {
      throughputMilli: s.computeMs > 0 ? Math.round(s.positions * 1e6 / s.computeMs) : 0,
      freeSessions: s.freeSessions,
      // queued work in whole-span steps, which routing multiplies by the span's step time
      queueLength: Math.ceil(s.queuedSpanSteps - 1e-9)
    }
  }

  /** `--layers auto`: learn the live spans (waiting a little for a DHT peer), then chooseAutoSpan (the partition planner). */
  private async autoSpan (manifest: ModelManifest, signal: AbortSignal): Promise<{ start: number, end: number }> {
    const { libp2p } = this.components.network
    this.stateValue = 'choosing-span'
    const deadline = Date.now() + (this.init.autoSettleMs ?? SPAN_SERVER_DEFAULTS.autoSettleMs)
    while (!dhtHasPeers(libp2p.services.dht) && Date.now() < deadline) {
      await sleep(this.pollMs, undefined, { signal })
    }
    const spans = await discoverSpans(libp2p, { modelId: manifest.id, layers: manifest.qwen3.numLayers, includeSelf: false, signal })
    const serving = new Set(spans.map(s => s.peerId.toString()))
    return chooseAutoSpan({
      layerBytes: layerBytesOf(manifest),
      spans,
      self: libp2p.peerId.toString(),
      memoryBytes: this.init.memoryBytes ?? freemem(),
      idlePeers: libp2p.getPeers().map(p => p.toString()).filter(p => !serving.has(p))
    }, { replicas: this.init.replicas ?? 1 })
  }

  /** Ask the network for a block's payload, at most once a second per block. */
  private kick (id: Uint8Array): void {
    const key = Buffer.from(id).toString('hex')
    const now = Date.now()
    if (now - (this.kicked.get(key) ?? 0) < 1000) {
      return
    }
    this.kicked.set(key, now)
    this.components.network.sync.fetchWantedPayload(id).catch(() => {})
  }

  private async poll<T> (signal: AbortSignal, check: () => Promise<T | undefined>): Promise<T> {
    while (true) {
      signal.throwIfAborted()
      const value = await check()
      if (value !== undefined) {
        return value
      }
      await sleep(this.pollMs, undefined, { signal })
    }
  }
}

/** Payload bytes of each decoder layer of the model (units 1..L). */
export function layerBytesOf (manifest: ModelManifest): number[] {
  const bytes = new Array<number>(manifest.qwen3.numLayers).fill(0)
  for (const u of manifest.units) {
    if (u.kind === 'layer' && u.layer != null && u.layer >= 0 && u.layer < bytes.length) {
      bytes[u.layer] = u.bytes
    }
  }
  return bytes.map(b => Math.max(1, b))
}

function replanJson (d: ReplanDecision): ReplanJson {
  return {
    at: Date.now(),
    moved: d.moved,
    gain: d.gain,
    reason: d.reason,
    ...(d.from != null ? { from: d.from } : {}),
    ...(d.to != null ? { to: d.to } : {})
  }
}

export function createSpanServer (components: SpanServerComponents, init: SpanServerInit): SpanServer {
  return new SpanServer(components, init)
}
