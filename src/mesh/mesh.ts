/**
 * The daemon's part in the mesh: the libp2p network (block gossip + sync,
 * the private DHT with the bly record validator), the payload policy, the
 * span this node serves (--model/--layers) and generation through peers.
 * start() brings up the network, then starts serving in the background;
 * stop() withdraws the span first, then stops the network.
 */
import { freemem } from 'node:os'
import { BlockType } from '../chain/types.ts'
import { pickModel } from '../learning/pol-models.ts'
import { loadModelManifest, resolveModelId } from '../model/chain-loader.ts'
import { recordAdapterName } from '../model/webgpu-adapter.ts'
import { createBlyNetwork } from '../net/network.ts'
import { createBlyDhtRecords } from '../net/records/dht-records.ts'
import { MeshError, MeshErrorCode } from './errors.ts'
import { createMeshGenerator } from './mesh-generate.ts'
import { PayloadPolicy } from './payload-policy.ts'
import { createSpanServer, layerBytesOf } from './span-server.ts'
import { planSwarm } from './swarm-plan.ts'
import { chainTrainWeights } from './train/chain-train-weights.ts'
import { trainRoute } from './train/mesh-train.ts'
import { trainThroughStages } from './train/stages-train.ts'
import { createTrainStageService } from './train/train-stage-service.ts'
import type { MeshGenerator } from './mesh-generate.ts'
import type { SpanServer, StageLimits } from './span-server.ts'
import type { StagesTrainInit } from './train/stages-train.ts'
import type { TrainStageService, TrainStageStats } from './train/train-stage-service.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { GenerationObserver } from '../model/generation/observer.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { ModelVersions } from '../model/model-versions.ts'
import type { BlyNetwork } from '../net/network.ts'
import type { LiveSpan } from '../net/records/discover.ts'
import type { StageFaults } from '../pipeline/fault-injection.ts'
import type { TrainStageFaults } from './train/train-fault-injection.ts'
import type { ClientReceipts } from '../pipeline/pipeline-client-init.ts'
import type { StageReceipts } from '../pipeline/stage-server.ts'
import type { TrainResultJson } from '../protocols/ipc-learning.ts'
import type { NetStatusJson, PeersParams, PeersResult, PlanParams, PlanResult, ServingJson, SpanJson } from '../protocols/ipc-mesh.ts'
import type { GenerateParams, GenerateResult, GenerateTokenJson } from '../protocols/ipc.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface MeshComponents {
  /** the started chain store */
  store: ChainStoreApi
  /** the node's identity key: libp2p identity and record signer */
  privateKey: PrivateKey
  inference: InferenceService
  /** every part's logger (bly:mesh as this class's); libp2p gets it too */
  logger: BlyComponentLogger
  /** told of the steps and failovers of generations through the mesh (the daemon's metrics) */
  observer?: GenerationObserver
  /** the models' weights versions: the served span follows the live one, generations pin one (absent: imported weights only) */
  versions?: ModelVersions
  /** the ledger's receipt exchange and admission rule (docs/ledger.md); absent = no receipts */
  receipts?: MeshReceipts
  /** true while the node's inference runs (its generations, its served sessions): training jobs hosted here wait */
  busy?(): boolean
}

/** What the mesh asks of the ledger (the daemon supplies it; docs/ledger.md). */
export interface MeshReceipts {
  /** the client's receipt signer for generations on a model (hex id); undefined = none */
  client?(modelHex: string): ClientReceipts | undefined
  /** takes the served stage's receipts */
  stage?: StageReceipts
  /** the priority a client's session gets on the served stage, at most what it asks */
  priorityFor?(client: string, modelId: string, requested: number): number
}

export interface MeshInit {
  /** the data dir: the peer store and DHT records persist in DIR/p2p */
  datastorePath?: string
  listen: string[]
  announce?: string[]
  bootstrap?: string[]
  /** fetch every payload */
  full?: boolean
  /** model manifest id (hex) to serve, or null */
  model?: string | null
  /** "START-END" or "auto" */
  layers?: string
  /** node record lifetime */
  recordTtlMs?: number
  /** generate: the ceiling of a stage's step deadline (the failover trigger for a stalled stage) */
  stepTimeoutMs?: number
  /** generate: the least step deadline */
  stepDeadlineFloorMs?: number
  /** the served stage's bounds: sessions at once and KV-cache positions over all of them */
  stageLimits?: StageLimits
  /** `--layers auto` and `plan`: bytes this node can devote to layers (default os.freemem()) */
  memoryBytes?: number
  /** `--layers auto` and `plan`: holders wanted per layer (default 1) */
  replicas?: number
  /** `--layers auto`: re-plan this often in ms (span server default); 0 = never */
  replanMs?: number
  /** the served stage's direct TLS channel: false = off, else bind host/port (span-server.ts) */
  directChannel?: false | { host?: string, port?: number }
  /** FAULT INJECTION FOR TESTS ONLY: the served stage misbehaves (pipeline/fault-injection.ts) */
  faults?: StageFaults
  /** FAULT INJECTION FOR TESTS ONLY: the train stage service's (mesh/train/train-fault-injection.ts) */
  trainFaults?: TrainStageFaults
}

function spanJson (model: string, s: LiveSpan): SpanJson {
  return {
    model,
    peerId: s.peerId.toString(),
    addrs: s.addrs.map(a => a.toString()),
    start: s.start,
    end: s.end,
    backend: s.backend,
    adapter: s.adapter != null && s.adapter !== '' ? s.adapter : null,
    tokensPerSecond: s.throughputMilli / 1000,
    freeSessions: s.freeSessions,
    queueLength: s.queueLength,
    movable: s.movable,
    memoryBytes: s.memoryBytes > 0 ? s.memoryBytes : null,
    lastSeen: s.lastSeen,
    expiresAt: s.expiresAt,
    rttMs: s.rttMs ?? null,
    source: s.source,
    version: s.weightsVersion.length > 0 ? Buffer.from(s.weightsVersion).toString('hex') : null
  }
}

export class Mesh {
  readonly policy: PayloadPolicy
  private readonly components: MeshComponents
  private readonly init: MeshInit
  private networkValue?: BlyNetwork
  private spanServerValue?: SpanServer
  private generator?: MeshGenerator
  private trainService?: TrainStageService
  private readonly log: BlyLogger

  constructor (components: MeshComponents, init: MeshInit) {
    this.components = components
    this.log = components.logger.forComponent('bly:mesh')
    this.init = init
    this.policy = new PayloadPolicy({ full: init.full })
  }

  get network (): BlyNetwork {
    if (this.networkValue == null) {
      throw new MeshError(MeshErrorCode.NOT_STARTED, 'the network is not started')
    }
    return this.networkValue
  }

  get spanServer (): SpanServer | undefined {
    return this.spanServerValue
  }

  async start (): Promise<void> {
    if (this.networkValue != null) {
      return
    }
    const records = createBlyDhtRecords()
    let network: BlyNetwork
    try {
      network = await createBlyNetwork({
        store: this.components.store,
        privateKey: this.components.privateKey,
        listen: this.init.listen,
        announce: this.init.announce,
        bootstrap: this.init.bootstrap,
        datastorePath: this.init.datastorePath,
        dhtValidator: records.validator,
        dhtSelector: records.selector,
        blockSync: { wantPayload: block => this.policy.want(block) },
        logger: this.components.logger
      })
    } catch (err: any) {
      throw new MeshError(MeshErrorCode.NETWORK_START, `cannot start the network (listen ${this.init.listen.join(', ')}): ${String(err?.message ?? err)}`, { cause: err })
    }
    this.networkValue = network
    this.generator = createMeshGenerator({
      store: this.components.store,
      network,
      inference: this.components.inference,
      spanServer: () => this.spanServerValue,
      logger: this.components.logger,
      ...(this.components.observer != null ? { observer: this.components.observer } : {}),
      ...(this.components.receipts?.client != null ? { receipts: this.components.receipts.client } : {})
    }, { stepTimeoutMs: this.init.stepTimeoutMs, stepDeadlineFloorMs: this.init.stepDeadlineFloorMs })
    if (this.init.model != null) {
      const server = createSpanServer({
        store: this.components.store,
        network,
        privateKey: this.components.privateKey,
        policy: this.policy,
        backend: () => this.components.inference.backendName ?? 'none',
        adapter: () => recordAdapterName(this.components.inference.backendStatus().adapter),
        workersFor: config => this.components.inference.workersFor(config),
        logger: this.components.logger,
        ...(this.components.versions != null ? { versions: this.components.versions } : {}),
        ...(this.components.receipts != null ? { receipts: this.components.receipts } : {})
      }, { model: this.init.model, layers: this.init.layers ?? 'auto', recordTtlMs: this.init.recordTtlMs, memoryBytes: this.init.memoryBytes, replicas: this.init.replicas, ...(this.init.replanMs != null ? { replanMs: this.init.replanMs } : {}), directChannel: this.init.directChannel, ...(this.init.stageLimits != null ? { stageLimits: this.init.stageLimits } : {}), ...(this.init.faults != null ? { faults: this.init.faults } : {}) })
      this.spanServerValue = server
      await server.start()
      // a span holder also hosts training jobs on its layers (/bly/train/1.0.0, background priority)
      const busy = this.components.busy
      const train = createTrainStageService({ libp2p: network.libp2p, logger: this.components.logger }, {
        weights: chainTrainWeights(this.components.store),
        busy: () => busy?.() ?? (this.serving()?.sessions ?? 0) > 0,
        ...(this.init.trainFaults != null ? { faults: this.init.trainFaults } : {})
      })
      await train.start()
      this.trainService = train
    }
  }

  /** Withdraws the served span, then stops the network. */
  async stop (): Promise<void> {
    await this.trainService?.stop().catch(() => {})
    this.trainService = undefined
    await this.spanServerValue?.stop().catch(err => { this.log.error('serve.stop.failed', { error: err.message }) })
    await this.generator?.stop().catch(() => {})
    this.generator = undefined
    const network = this.networkValue
    this.networkValue = undefined
    await network?.stop()
  }

  /** Gossip a block this node authored (never throws: peers also catch up on connect). */
  publish (id: Uint8Array): void {
    const network = this.networkValue
    if (network == null) {
      return
    }
    network.publish(id).catch((err: Error) => {
      this.log.warn('gossip.publish.failed', { block: Buffer.from(id).toString('hex'), error: err.message })
    })
  }

  /** Dialable multiaddrs, each ending in /p2p/<peerId>. */
  addrs (): string[] {
    const libp2p = this.network.libp2p
    const self = libp2p.peerId.toString()
    return libp2p.getMultiaddrs().map(ma => {
      const s = ma.toString()
      return s.includes('/p2p/') ? s : `${s}/p2p/${self}`
    })
  }

  /** The train stage service's counters (jobs hosted, units run, checkpoints sent and loaded); null when it does not run. */
  trainStage (): TrainStageStats | null {
    return this.trainService != null ? { ...this.trainService.stats, refused: { ...this.trainService.stats.refused } } : null
  }

  serving (): ServingJson | null {
    return this.spanServerValue?.status() ?? null
  }

  netStatus (): NetStatusJson {
    const { libp2p, gossip, sync } = this.network
    return {
      peerId: libp2p.peerId.toString(),
      addrs: this.addrs(),
      connections: libp2p.getConnections().map(c => ({ peerId: c.remotePeer.toString(), addr: c.remoteAddr.toString() })),
      full: this.policy.full,
      gossip: { accepted: gossip.stats.accepted, ignored: gossip.stats.ignored, rejected: gossip.stats.rejected, published: gossip.stats.published, refusedByCode: { ...gossip.stats.rejectedByCode } },
      sync: {
        syncs: sync.stats.syncs,
        syncErrors: sync.stats.syncErrors,
        syncRetries: sync.stats.syncRetries,
        blocksAdded: sync.stats.blocksAdded,
        chunksFetched: sync.stats.chunksFetched,
        chunkErrors: sync.stats.chunkErrors,
        offences: { ...sync.stats.offences },
        bans: { ...sync.stats.bans },
        refused: sync.stats.refused,
        orphanRequests: sync.stats.orphanRequests,
        orphanParentsFetched: sync.stats.orphanParentsFetched,
        orphanParentsAbandoned: sync.stats.orphanParentsAbandoned
      },
      penalties: this.network.penalties.peers()
    }
  }

  /** Who serves which span of which model (every model whose manifest is stored here, or `params.model`). */
  async peers (params: PeersParams, signal?: AbortSignal): Promise<PeersResult> {
    const { store } = this.components
    const generator = this.generator
    if (generator == null) {
      throw new MeshError(MeshErrorCode.NOT_STARTED, 'the network is not started')
    }
    const ids: Uint8Array[] = []
    if (params.model != null) {
      ids.push(await resolveModelId(store, params.model))
    } else {
      for await (const block of store.byType(BlockType.ModelManifest)) {
        if (block.payloadComplete) {
          ids.push(block.id)
        }
      }
    }
    const models: string[] = []
    const spans: SpanJson[] = []
    for (const id of ids) {
      const manifest = await loadModelManifest(store, id)
      models.push(manifest.idHex)
      for (const s of await generator.spans(id, manifest.qwen3.numLayers, signal)) {
        spans.push(spanJson(manifest.idHex, s))
      }
    }
    const libp2p = this.network.libp2p
    const connected = new Map<string, string[]>()
    for (const c of libp2p.getConnections()) {
      const key = c.remotePeer.toString()
      connected.set(key, [...(connected.get(key) ?? []), c.remoteAddr.toString()])
    }
    return { models, spans, connected: [...connected].map(([peerId, addrs]) => ({ peerId, addrs })) }
  }

  /** `plan`: coverage per layer now, the bottleneck, and what the partition planner would do (swarm-plan.ts). */
  async plan (params: PlanParams, signal?: AbortSignal): Promise<PlanResult> {
    const { store } = this.components
    const generator = this.generator
    if (generator == null) {
      throw new MeshError(MeshErrorCode.NOT_STARTED, 'the network is not started')
    }
    const model = params.model ?? this.init.model
    if (model == null) {
      throw new MeshError(MeshErrorCode.BAD_SPAN, 'plan needs a model: give --model (this node serves none)')
    }
    const manifest = await loadModelManifest(store, await resolveModelId(store, model))
    const spans = await generator.spans(manifest.id, manifest.qwen3.numLayers, signal)
    const libp2p = this.network.libp2p
    const serving = new Set(spans.map(s => s.peerId.toString()))
    const memoryBytes = this.init.memoryBytes ?? freemem()
    const report = planSwarm({
      layerBytes: layerBytesOf(manifest),
      spans,
      self: libp2p.peerId.toString(),
      memoryBytes,
      ...(params.idlePeers === true ? { idlePeers: libp2p.getPeers().map(p => p.toString()).filter(p => !serving.has(p)) } : {})
    }, { replicas: params.replicas ?? this.init.replicas ?? 1 })
    const adapter = recordAdapterName(this.components.inference.backendStatus().adapter)
    return { model: manifest.idHex, memoryBytes, memoryEstimated: this.init.memoryBytes == null, backend: this.components.inference.backendName, adapter: adapter !== '' ? adapter : null, ...report }
  }

  async generate (params: GenerateParams, onToken?: (t: GenerateTokenJson) => void | Promise<void>, signal?: AbortSignal): Promise<GenerateResult> {
    if (this.generator == null) {
      throw new MeshError(MeshErrorCode.NOT_STARTED, 'the network is not started')
    }
    return this.generator.generate(params, onToken, signal)
  }

  /**
   * `blyd train --via mesh`: the job through the span holders of the model
   * (trainThroughStages over trainRoute); the same JSON as `blyd train`.
   * `store`: where the job reads the chain and writes its proposal; a daemon
   * passes its authoring view so the Proposal and Delta blocks are gossiped
   * like `delta propose`'s (default: the mesh's store, which publishes nothing).
   */
  async train (init: Omit<StagesTrainInit, 'store' | 'route'> & { store?: ChainStoreApi }): Promise<TrainResultJson> {
    if (this.generator == null) {
      throw new MeshError(MeshErrorCode.NOT_STARTED, 'the network is not started')
    }
    const store = init.store ?? this.components.store
    const id = await pickModel(store, init.model)
    const manifest = await loadModelManifest(store, id)
    const spans = await this.generator.spans(id, manifest.qwen3.numLayers, init.signal)
    const route = trainRoute(this.network.libp2p, spans, manifest.qwen3.numLayers)
    return trainThroughStages({ ...init, model: manifest.idHex, store, route, log: this.components.logger.forComponent('bly:mesh:train') })
  }
}

export function createMesh (components: MeshComponents, init: MeshInit): Mesh {
  return new Mesh(components, init)
}
