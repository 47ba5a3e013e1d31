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
import { LocalStage } from './local-stage.ts'
import { planReplacement, routeSpans } from './mesh-route.ts'
import type { SpanServer } from './span-server.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { Speculation } from '../model/generation/request.ts'
import type { TokenModel } from '../model/generation/token-model.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { LayerRange } from '../model/qwen3/layer-range.ts'
import type { ChatTokenizer } from '../model/tokenizer.ts'
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
function meshResult (result: Pick<GenerateResult, 'tokens' | 'text' | 'finishReason' | 'speculative'>, run: { promptTokens: number, seconds: number, backend: string, route: ReadonlyArray<{ peerId: PeerId, start: number, end: number }>, self: PeerId, session?: PipelineSession, firstTokenMs?: number }): GenerateResult {
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
    ...(result.speculative != null ? { speculative: result.speculative } : {})
  }
}

export class MeshGenerator {
  private readonly components: MeshGeneratorComponents
  private readonly init: MeshGeneratorInit
  /** the embedding + head per model (hex id), loaded on first use */
  private readonly ends: Map<string, Promise<ClientEnds>>
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
      const e = await p.catch(() => undefined)
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
    const speculation = speculationOf(params)
    const id = await resolveModelId(store, params.model)
    const manifest = await this.manifest(id, signal)
    const numLayers = manifest.qwen3.numLayers
    let spans = await this.spans(id, numLayers, signal)
    const self = network.libp2p.peerId
    const others = spans.filter(s => !s.peerId.equals(self))
    if (others.length === 0 && await this.storesAllUnits(manifest)) {
      const result = await inference.generate({ ...params, model: manifest.idHex }, onToken, signal)
      return { ...result, via: 'local', route: [{ peerId: self.toString(), start: 0, end: numLayers, self: true }] }
    }
    const route = routeSpans(spans, numLayers)
    const client = await this.clientEnds(manifest, signal)
    const own = this.components.spanServer()
    const { prompt, tokenizer } = resolvePrompt(params, manifest.idHex, () => client.tokenizer)
    // the announced throughput is the whole span's: ms per position through it bounds any part of it
    const toHop = (s: LiveSpan): RouteHop => ({ peerId: s.peerId, multiaddrs: s.addrs, start: s.start, end: s.end, ...(s.throughputMilli > 0 ? { msPerPosition: 1e6 / s.throughputMilli } : {}) })
    const receipts = this.components.receipts?.(manifest.idHex)
    const pipeline = createPipelineClient({
      ...(receipts != null ? { receipts } : {}),
      libp2p: network.libp2p,
      modelId: manifest.idHex,
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
          // the spans known at the start have no holder left: ask the swarm again
          spans = await this.spans(id, numLayers, options.signal ?? signal)
          return planReplacement(spans, lost, banned).map(toHop)
        }
      },
      onRecovery: (r, sessionId) => {
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
        const range = own?.range
        if (range == null || hop.start < range.start || hop.end > range.end) {
          throw new MeshError(MeshErrorCode.NO_ROUTE, `this node no longer serves layers [${hop.start}, ${hop.end})`)
        }
        return new LocalStage(range, { start: hop.start, end: hop.end })
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
      eosTokenIds: eosTokenIdsOf(manifest.qwen3.eosTokenIds, tokenizer),
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
      firstTokenMs
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

  private async clientEnds (manifest: ModelManifest, signal?: AbortSignal): Promise<ClientEnds> {
    let entry = this.ends.get(manifest.idHex)
    if (entry == null) {
      entry = this.loadEnds(manifest, signal)
      this.ends.set(manifest.idHex, entry)
      entry.catch(() => { this.ends.delete(manifest.idHex) })
    }
    return entry
  }

  private async loadEnds (manifest: ModelManifest, signal?: AbortSignal): Promise<ClientEnds> {
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
    const ends = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 0, embedding: true, head: true })
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
