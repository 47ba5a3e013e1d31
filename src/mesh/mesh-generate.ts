/**
 * `generate` in a daemon that is part of a mesh.
 *
 * Where it runs: through the mesh whenever another peer announces a live span
 * of the model, or when this node lacks the payload of some layer (it cannot
 * run every layer itself); otherwise in the local inference service, as a
 * single node would. Through the mesh: discover the live spans (this node's
 * own included), pick the cheapest chain covering [0, L) (mesh-route.ts:
 * RTT + compute + queue wait per hop; a hop may use part of a span), and run the pipeline client with this
 * node's embedding and head (fetched from peers when missing); a hop on this
 * node's own span runs in-process. The result names the route and each hop's
 * share of the time.
 *
 * Failover: a stage that dies, stalls past its step deadline (adaptive: a
 * multiple of what it took so far, of its announced throughput before its
 * first step, between stepDeadlineFloorMs and stepTimeoutMs) or answers
 * garbage is banned for the session and its layers re-routed over
 * the cheapest chain of unbanned live spans, or parts of spans, over them
 * (planReplacement in mesh-route.ts; the spans are re-discovered once when
 * those known at the start have none left), with the stage's history
 * replayed (pipeline-client.ts). The result lists the failovers in
 * `recoveries` and each is logged as generate.recovered.
 *
 * Versions: a generation is pinned to one weights version from its first
 * token to its last: `params.version`, else the model's live version when
 * it starts (the inference service's ModelVersions). Only spans whose node
 * record names that version are routed over, for the start and for
 * failover; every OPEN pins it (a stage that moved to another version
 * refuses with WRONG_VERSION and is routed around); the client's own
 * embedding and head are loaded in it; and a local run is pinned to it. A
 * generation running when a new version is accepted so finishes on the
 * version it started with (its stages keep their old weights until their
 * sessions end: span-server.ts). The result names the version.
 */
import { BlockType } from '../chain/types.ts'
import { findUnitBlock, loadLayerRangeFromChain, loadModelManifest, resolveModelId } from '../model/chain-loader.ts'
import { DEFAULT_MAX_NEW_TOKENS } from '../model/generation/generate.ts'
import { eosTokenIdsOf, resolvePrompt, samplingOf, speculationOf } from '../model/generation/request.ts'
import { runGeneration } from '../model/generation/runner.ts'
import { SPECULATIVE_DEFAULTS } from '../model/generation/speculative.ts'
import { tokenizerFromManifest } from '../model/import/manifest-tokenizer.ts'
import { discoverSpans } from '../net/records/discover.ts'
import { createPipelineClient } from '../pipeline/pipeline-client.ts'
import { priorityOf } from '../pipeline/priority.ts'
import { MESH_GENERATE_DEFAULTS } from './constants.ts'
import { MeshError, MeshErrorCode } from './errors.ts'
import { planReplacement, routeSpans } from './mesh-route.ts'
import type { SpanServer } from './span-server.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { GenerationObserver } from '../model/generation/observer.ts'
import type { Speculation } from '../model/generation/request.ts'
import type { TokenModel } from '../model/generation/token-model.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { LayerRange } from '../model/qwen3/layer-range.ts'
import type { ChatTokenizer } from '../model/tokenizer.ts'
import type { WeightsVersion } from '../model/weights-version.ts'
import type { BlyNetwork } from '../net/network.ts'
import type { LiveSpan } from '../net/records/discover.ts'
import type { ClientReceipts } from '../pipeline/pipeline-client-init.ts'
import type { PipelineSession, Recovery } from '../pipeline/pipeline-client.ts'
import type { RouteHop } from '../pipeline/route.ts'
import type { RecoveryJson } from '../protocols/ipc-mesh.ts'
import type { GenerateParams, GenerateResult, GenerateTokenJson } from '../protocols/ipc.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { PeerId } from '@libp2p/interface'

export interface MeshGeneratorComponents {
  store: ChainStoreApi
  network: BlyNetwork
  inference: InferenceService
  /** the span this node serves, if any */
  spanServer(): SpanServer | undefined
  /** logs as bly:mesh:generate */
  logger: BlyComponentLogger
  /** the client's receipt signer for a model (docs/ledger.md); absent = no receipts */
  receipts?(modelHex: string): ClientReceipts | undefined
  /** told of each hop's steps and of each failover (the daemon's metrics) */
  observer?: GenerationObserver
}

export interface MeshGeneratorInit {
  /** the ceiling of a stage's step deadline (per 32 positions); the pipeline client's default when absent */
  stepTimeoutMs?: number
  /** the least step deadline; the pipeline client's default when absent */
  stepDeadlineFloorMs?: number
}

interface ClientEnds {
  manifest: ModelManifest
  ends: LayerRange
  tokenizer: ChatTokenizer | null
}

/** Loaded client ends of one (model, version), and the generations using them. */
interface EndsEntry {
  ends: Promise<ClientEnds>
  users: number
}

/** The spans of `spans` serving weights version `version` (all of them when no version is pinned). */
export function spansOfVersion<S extends { weightsVersion: Uint8Array }> (spans: readonly S[], version: string | undefined): S[] {
  if (version == null) {
    return [...spans]
  }
  return spans.filter(s => s.weightsVersion.length > 0 && Buffer.from(s.weightsVersion).toString('hex') === version)
}

/**
 * The positions a generation can reach, asked of every stage at OPEN so a
 * stage reserves only that much KV cache (0 = the stage's default, when it
 * would exceed MESH_GENERATE_DEFAULTS.maxSessionLength): the prompt, the new
 * tokens, and with speculation one verify pass of up to maxK drafts + 1.
 */
export function sessionLength (promptTokens: number, maxNewTokens: number | undefined, speculation: Speculation | null): number {
  const spec = speculation != null ? Math.max(speculation.k, SPECULATIVE_DEFAULTS.maxK) + 1 : 0
  const need = promptTokens + (maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS) + spec
  return need <= MESH_GENERATE_DEFAULTS.maxSessionLength ? need : 0
}

function recoveryJson (r: Recovery): RecoveryJson {
  return { peerId: r.peerId, reason: r.reason, error: r.error, start: r.start, end: r.end, replacement: r.replacement, positions: r.positions, replayDiff: r.replayDiff, ms: Math.round(r.ms * 10) / 10, ...(r.deadlineMs != null ? { deadlineMs: r.deadlineMs } : {}) }
}

/** The generate result of a generation through the mesh: the tokens, then where it ran and what happened on the way. */
function meshResult (result: Pick<GenerateResult, 'tokens' | 'text' | 'finishReason' | 'speculative'>, run: { promptTokens: number, seconds: number, backend: string, route: ReadonlyArray<{ peerId: PeerId, start: number, end: number }>, self: PeerId, session?: PipelineSession, firstTokenMs?: number, version?: string }): GenerateResult {
  const stats = run.session?.stats
  return {
    tokens: result.tokens,
    text: result.text,
    promptTokens: run.promptTokens,
    tokensPerSecond: run.seconds > 0 ? result.tokens.length / run.seconds : 0,
    finishReason: result.finishReason,
    backend: run.backend,
    via: 'mesh',
    route: run.route.map((s, i) => ({ peerId: s.peerId.toString(), start: s.start, end: s.end, self: s.peerId.equals(run.self), ms: Math.round((stats?.stageMs[i] ?? 0) * 10) / 10 })),
    localMs: Math.round((stats?.localMs ?? 0) * 10) / 10,
    recoveries: (run.session?.recoveries ?? []).map(recoveryJson),
    ...(run.firstTokenMs != null ? { firstTokenMs: Math.round(run.firstTokenMs * 10) / 10 } : {}),
    busyWaits: run.session?.busyWaits ?? 0,
    ...(result.speculative != null ? { speculative: result.speculative } : {}),
    ...(run.version != null ? { version: run.version } : {})
  }
}

export class MeshGenerator {
  private readonly components: MeshGeneratorComponents
  private readonly init: MeshGeneratorInit
  /**
   * the embedding + head per model and version (`model@version`), loaded on
   * first use; an entry no generation uses is freed once another version of
   * the model is asked for (so at most the versions in use + the latest)
   */
  private readonly ends: Map<string, EndsEntry>
  private readonly log: BlyLogger

  constructor (components: MeshGeneratorComponents, init: MeshGeneratorInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('bly:mesh:generate')
    this.init = init
    this.ends = new Map()
  }

  async stop (): Promise<void> {
    const all = [...this.ends.values()]
    this.ends.clear()
    for (const p of all) {
      const e = await p.ends.catch(() => undefined)
      e?.ends.dispose()
    }
  }

  /** The live spans of `modelId` (this node's own included). */
  async spans (modelId: Uint8Array, numLayers: number, signal?: AbortSignal): Promise<LiveSpan[]> {
    const announcer = this.components.spanServer()?.announcer
    return discoverSpans(this.components.network.libp2p, {
      modelId,
      layers: numLayers,
      signal,
      ...(announcer != null ? { localRecord: async () => announcer.record() } : {})
    })
  }

  async generate (params: GenerateParams, onToken?: (t: GenerateTokenJson) => void | Promise<void>, signal?: AbortSignal): Promise<GenerateResult> {
    const { store, network, inference } = this.components
    const id = await resolveModelId(store, params.model)
    const manifest = await this.manifest(id, signal)
    const numLayers = manifest.qwen3.numLayers
    // the version every token of this generation is computed with
    const pinned = await inference.versionOf(manifest, params.version)
    const version = pinned?.id
    const spans = spansOfVersion(await this.spans(id, numLayers, signal), version)
    const self = network.libp2p.peerId
    const others = spans.filter(s => !s.peerId.equals(self))
    if (others.length === 0 && await this.storesAllUnits(manifest)) {
      const result = await inference.generate({ ...params, model: manifest.idHex, ...(version != null ? { version } : {}) }, onToken, signal)
      return { ...result, via: 'local', route: [{ peerId: self.toString(), start: 0, end: numLayers, self: true }] }
    }
    const route = this.routeOf(spans, numLayers, version)
    const key = `${manifest.idHex}@${version ?? ''}`
    const client = await this.acquireEnds(key, manifest, pinned, signal)
    try {
      return await this.run(params, { manifest, version, spans, route, client, onToken, signal })
    } finally {
      this.releaseEnds(key)
    }
  }

  /** routeSpans over the spans of the pinned version, the error naming the version when none covers the model. */
  private routeOf (spans: LiveSpan[], numLayers: number, version: string | undefined): LiveSpan[] {
    try {
      return routeSpans(spans, numLayers)
    } catch (err: any) {
      if (version != null && err instanceof MeshError && err.code === MeshErrorCode.NO_ROUTE) {
        throw new MeshError(MeshErrorCode.NO_ROUTE, `${err.message} among the spans serving weights version ${version}`, { cause: err })
      }
      throw err
    }
  }

  /** The generation through the pipeline over `run.route` (see the file comment). */
  private async run (params: GenerateParams, run: { manifest: ModelManifest, version: string | undefined, spans: LiveSpan[], route: LiveSpan[], client: ClientEnds, onToken?(t: GenerateTokenJson): void | Promise<void>, signal?: AbortSignal }): Promise<GenerateResult> {
    const { network, inference, observer } = this.components
    const { manifest, version, route, client, onToken, signal } = run
    let spans = run.spans
    const id = manifest.id
    const numLayers = manifest.qwen3.numLayers
    const self = network.libp2p.peerId
    const speculation = speculationOf(params)
    const own = this.components.spanServer()
    const { prompt, tokenizer } = resolvePrompt(params, manifest.idHex, () => client.tokenizer)
    // the announced throughput is the whole span's: ms per position through it bounds any part of it
    const toHop = (s: LiveSpan): RouteHop => ({ peerId: s.peerId, multiaddrs: s.addrs, start: s.start, end: s.end, ...(s.throughputMilli > 0 ? { msPerPosition: 1e6 / s.throughputMilli } : {}) })
    const receipts = this.components.receipts?.(manifest.idHex)
    const pipeline = createPipelineClient({
      ...(receipts != null ? { receipts } : {}),
      libp2p: network.libp2p,
      modelId: manifest.idHex,
      ...(version != null ? { weightsVersion: version } : {}),
      local: client.ends,
      route: route.map(toHop),
      priority: priorityOf(params.priority ?? 'interactive'),
      maxLength: sessionLength(prompt.length, params.maxNewTokens, speculation),
      ...(this.init.stepTimeoutMs != null ? { stepTimeoutMs: this.init.stepTimeoutMs } : {}),
      ...(this.init.stepDeadlineFloorMs != null ? { deadlineFloorMs: this.init.stepDeadlineFloorMs } : {}),
      reroute: async (lost, banned, options) => {
        try {
          return planReplacement(spans, lost, banned).map(toHop)
        } catch {
          // the spans known at the start have no holder left: ask the swarm again (holders of this version only)
          spans = spansOfVersion(await this.spans(id, numLayers, options.signal ?? signal), version)
          return planReplacement(spans, lost, banned).map(toHop)
        }
      },
      ...(observer?.step != null ? { onStep: (hop: { start: number, end: number }, rows: number, ms: number) => { observer.step?.({ start: hop.start, end: hop.end }, rows, ms) } } : {}),
      onRecovery: (r, sessionId) => {
        observer?.failover?.(r.reason)
        this.log.warn('generate.recovered', {
          session: sessionId,
          peerId: r.peerId,
          reason: r.reason,
          error: r.error,
          start: r.start,
          end: r.end,
          replacement: r.replacement.map(h => `${h.peerId}[${h.start},${h.end})`).join(' '),
          positions: r.positions,
          replayDiff: r.replayDiff,
          alsoBanned: r.alsoBanned.join(' '),
          ms: Math.round(r.ms * 10) / 10,
          deadlineMs: r.deadlineMs
        })
      },
      openStage: (hop) => {
        if (!hop.peerId.equals(self)) {
          return undefined
        }
        if (own == null) {
          throw new MeshError(MeshErrorCode.NO_ROUTE, `this node no longer serves layers [${hop.start}, ${hop.end})`)
        }
        return own.openLocal(hop, version)
      }
    })
    let session: PipelineSession | undefined
    const model: TokenModel<PipelineSession> = {
      createSession: () => {
        session = pipeline.createSession()
        return session
      },
      nextLogits: async (s, ids) => {
        const logits = await s.nextLogits(ids, { signal })
        firstTokenMs ??= performance.now() - t0
        return logits
      }
    }
    let firstTokenMs: number | undefined
    const t0 = performance.now()
    const result = await runGeneration({
      target: model,
      prompt,
      tokenizer,
      eosTokenIds: eosTokenIdsOf(manifest.qwen3.eosTokenIds, tokenizer, params.chat != null),
      sampling: samplingOf(params),
      maxNewTokens: params.maxNewTokens,
      stop: params.stop,
      ...(speculation != null ? { draft: { model: await this.components.inference.draftModel(speculation.draft, manifest.qwen3.vocabSize), k: speculation.k } } : {}),
      onToken,
      signal
    })
    const used = session as PipelineSession | undefined
    return meshResult(result, {
      promptTokens: prompt.length,
      seconds: (performance.now() - t0) / 1000,
      backend: inference.backendName ?? 'none',
      route: used?.route ?? route,
      self,
      session: used,
      firstTokenMs,
      ...(version != null ? { version } : {})
    })
  }

  /** The manifest, its payload fetched from peers when missing. */
  private async manifest (id: Uint8Array, signal?: AbortSignal): Promise<ModelManifest> {
    const block = await this.components.store.get(id)
    if (block != null && block.header.type === BlockType.ModelManifest && !block.payloadComplete) {
      await this.fetch(block.id, 'the model manifest', signal)
    }
    return loadModelManifest(this.components.store, id)
  }

  private async storesAllUnits (manifest: ModelManifest): Promise<boolean> {
    for (const unit of manifest.units) {
      const block = await findUnitBlock(this.components.store, manifest, unit)
      if (block?.payloadComplete !== true) {
        return false
      }
    }
    return true
  }

  /** The client ends of `key` (model@version), loaded on first use, counted as used until releaseEnds(key). */
  private async acquireEnds (key: string, manifest: ModelManifest, version: WeightsVersion | undefined, signal?: AbortSignal): Promise<ClientEnds> {
    let entry = this.ends.get(key)
    if (entry == null) {
      const ends = this.loadEnds(manifest, version, signal)
      const created: EndsEntry = { ends, users: 0 }
      entry = created
      this.ends.set(key, created)
      ends.catch(() => {
        if (this.ends.get(key) === created) {
          this.ends.delete(key)
        }
      })
    }
    entry.users++
    // the ends of another version of this model that no generation uses are freed
    for (const [k, e] of [...this.ends]) {
      if (k !== key && k.startsWith(`${manifest.idHex}@`) && e.users === 0) {
        this.ends.delete(k)
        e.ends.then(c => { c.ends.dispose() }, () => {})
      }
    }
    try {
      return await entry.ends
    } catch (err) {
      entry.users--
      throw err
    }
  }

  private releaseEnds (key: string): void {
    const entry = this.ends.get(key)
    if (entry != null) {
      entry.users = Math.max(0, entry.users - 1)
    }
  }

  private async loadEnds (manifest: ModelManifest, version: WeightsVersion | undefined, signal?: AbortSignal): Promise<ClientEnds> {
    const { store } = this.components
    const last = manifest.units.length - 1
    for (const unit of [manifest.units[0], manifest.units[last]]) {
      const block = await findUnitBlock(store, manifest, unit)
      if (block == null) {
        throw new MeshError(MeshErrorCode.UNAVAILABLE, `the ${unit.kind} unit of model ${manifest.idHex} has no layer block here yet (the node is still syncing)`)
      }
      if (!block.payloadComplete) {
        await this.fetch(block.id, `the ${unit.kind} unit`, signal)
      }
    }
    // the version's deltas of the embedding and the head
    for (const d of version?.acceptedDeltas ?? []) {
      if (d.unit !== manifest.units[0].unit && d.unit !== manifest.units[last].unit) {
        continue
      }
      const block = await store.get(Uint8Array.from(Buffer.from(d.delta, 'hex')))
      if (block != null && !block.payloadComplete) {
        await this.fetch(block.id, `delta ${d.delta} of unit ${d.unit}`, signal)
      }
    }
    const ends = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 0, embedding: true, head: true }, version)
    return { manifest, ends, tokenizer: manifest.tokenizer != null ? tokenizerFromManifest(manifest.tokenizer) : null }
  }

  private async fetch (id: Uint8Array, what: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.components.network.sync.fetchPayload(id, { signal })
    } catch (err: any) {
      throw new MeshError(MeshErrorCode.UNAVAILABLE, `cannot fetch ${what} (block ${Buffer.from(id).toString('hex')}) from peers: ${String(err?.message ?? err)}`, { cause: err })
    }
  }
}

export function createMeshGenerator (components: MeshGeneratorComponents, init: MeshGeneratorInit = {}): MeshGenerator {
  return new MeshGenerator(components, init)
}
