/**
 * The daemon: owns the data dir lock, the identity, the chain store, the
 * inference service, the mesh (libp2p network, the span served, generation
 * through peers), the IPC server and, when `httpListen` is set, the HTTP
 * listener (the OpenAI-compatible API, /metrics, the dashboard), started in that order
 * and stopped in reverse. Blocks authored here (`chain.put`,
 * `model.import`, `delta propose`, attestations) are gossiped. The
 * validator service (learning) starts after the mesh (it fetches payloads
 * through it) and stops before it. IPC `generate` and the HTTP API run one
 * generate (daemon/generate.ts), counted in the metrics.
 */
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createChainStore } from '../chain/index.ts'
import { EvalWindowsCache } from '../learning/fold/eval-windows.ts'
import { ledgerStatus, parsePeerKey } from '../learning/ledger/commands.ts'
import { createReceiptOutbox } from '../learning/ledger/outbox.ts'
import { balanceOf, ledgerHead, receiptNonceSpent, receiptTermsRefusal } from '../learning/ledger/query.ts'
import { ClientReceipts, priorityForBalance, stageReceipts } from '../learning/ledger/receipt-exchange.ts'
import { LedgerService } from '../learning/ledger/service.ts'
import { createChainModelVersions } from '../learning/model-versions.ts'
import { TrainJobLog } from '../learning/train/job-log.ts'
import { createValidatorService } from '../learning/validator-service.ts'
import { createMesh } from '../mesh/mesh.ts'
import { publishingStore } from '../mesh/publishing-store.ts'
import { armTrainFaultSignal, trainFaultsFromEnv } from '../mesh/train/train-fault-injection.ts'
import { createInferenceService } from '../model/inference-service.ts'
import { describeAdapter } from '../model/webgpu-adapter.ts'
import { armFaultSignal, stageFaultsFromEnv } from '../pipeline/fault-injection.ts'
import { fromHex, toHex } from '../protocols/hex.ts'
import { silentLogger } from '../protocols/logger.ts'
import { aloneHint } from './alone-hint.ts'
import { chainTips } from './chain-queries.ts'
import { directChannelBind } from './config.ts'
import { CHAIN_DIR_NAME, DATA_DIR_MODE, LEDGER_STATUS_MAX_AGE_MS, P2P_DIR_NAME, STOP_TIMEOUT_MS } from './constants.ts'
import { dashboardSections } from './dashboard-sections.ts'
import { InvalidParamsError, IpcError } from './errors.ts'
import { explainedGenerate, meteredGenerate } from './generate.ts'
import { createDashboardFeed, createHttpApi, parseHttpListen, registerDashboardRoutes, registerMetricsRoute, registerOpenAiRoutes } from './http/index.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { IpcServer } from './ipc-server.ts'
import { registerLearningMethods } from './learning-methods.ts'
import { registerLedgerMethods } from './ledger-methods.ts'
import { DataDirLock } from './lock.ts'
import { registerMeshMethods } from './mesh-methods.ts'
import { registerCoreMethods } from './methods.ts'
import { DaemonMetrics } from './metrics.ts'
import { registerModelMethods } from './model-methods.ts'
import { blydVersion } from './version.ts'
import type { BlydConfig } from './config.ts'
import type { GenerateFn } from './generate.ts'
import type { DashboardFeed, HttpApi } from './http/index.ts'
import type { Identity } from './identity.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { LedgerFold } from '../learning/ledger/fold.ts'
import type { ReceiptOutbox } from '../learning/ledger/outbox.ts'
import type { ChainModelVersions } from '../learning/model-versions.ts'
import type { ValidatorService } from '../learning/validator-service.ts'
import type { Mesh, MeshReceipts } from '../mesh/mesh.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { HttpStatusJson } from '../protocols/ipc.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'

export interface DaemonInit {
  config: BlydConfig
  /** every part's logger and libp2p's (default silent; `blyd start` gives daemon/logger.ts's at config.logLevel) */
  logger?: BlyComponentLogger
}

export class Daemon {
  readonly config: BlydConfig
  readonly ipc: IpcServer
  readonly metrics: DaemonMetrics
  readonly inference: InferenceService
  /** the HTTP listener, when httpListen is set */
  readonly http: HttpApi | undefined
  /** the dashboard's snapshots and event streams, on the HTTP listener */
  readonly dashboard: DashboardFeed | undefined
  /** the daemon's one generate: where the mesh decides, counted in the metrics (IPC and HTTP both call it) */
  readonly generate: GenerateFn
  /** the model versions (the fold over the store): what the inference service and the served span load */
  readonly versions: ChainModelVersions
  /** the BLY ledger folds of this node (caches shared by the rewards methods, status and metrics) */
  readonly ledger: LedgerService
  /** the training jobs run through this daemon (`train` over IPC), for status and the dashboard */
  readonly trainJobs: TrainJobLog
  /** resolves once the daemon has fully stopped */
  readonly stopped: Promise<void>
  private readonly logger: BlyComponentLogger
  private readonly log: BlyLogger
  private readonly lock: DataDirLock
  private readonly resolveStopped: () => void
  private identityValue: Identity | undefined
  private storeValue: ChainStoreApi | undefined
  /** the store as block authors see it: createBlock also gossips the block */
  private authoringValue: ChainStoreApi | undefined
  private meshValue: Mesh | undefined
  /** this node's co-signed receipts as a stage, until published */
  private outboxValue: ReceiptOutbox | undefined
  /** the eval windows of datasets, shared by the fold's readers (IPC) and the validator */
  private evalWindowsValue: EvalWindowsCache | undefined
  private validatorValue: ValidatorService | undefined
  /** generations running through this daemon (the validator defers to them) */
  private generating: number
  private startedAt: number
  private state: 'idle' | 'starting' | 'running' | 'stopping' | 'stopped'
  private stopping: Promise<void> | undefined
  private starting: Promise<void> | undefined
  private disarmFaults: () => void = () => {}
  /** removes the dashboard's peer listeners */
  private unwatchPeers: () => void = () => {}

  constructor (init: DaemonInit) {
    this.config = init.config
    this.logger = init.logger ?? silentLogger()
    this.log = this.logger.forComponent('bly:daemon')
    this.lock = new DataDirLock({ dataDir: init.config.dataDir })
    this.ledger = new LedgerService({ store: () => this.store })
    this.trainJobs = new TrainJobLog()
    this.metrics = new DaemonMetrics({
      chainCounts: async () => this.storeValue?.counts(),
      chainTips: async () => {
        const info = this.storeValue != null ? await chainTips(this.storeValue) : undefined
        return info != null ? { A: info.A.length, B: info.B.length } : undefined
      },
      ipcStats: () => this.ipc.stats(),
      netStatus: () => this.meshValue?.netStatus(),
      serving: () => this.meshValue?.serving(),
      httpLoad: () => this.http?.load(),
      ledgerTotals: () => this.ledger.folds().map(({ ledger }) => ({ model: ledger.model, minted: ledger.minted, paid: ledger.paid, receiptsPaid: ledger.counts.receiptsPaid, receiptsSkipped: ledger.counts.receiptsSkipped }))
    })
    this.ipc = new IpcServer({
      socketPath: init.config.ipcSocket,
      maxLineBytes: init.config.ipcMaxLineBytes,
      maxBufferedLineBytes: init.config.ipcMaxBufferedLineBytes,
      maxConnections: init.config.ipcMaxConnections,
      maxBatch: init.config.ipcMaxBatch,
      logger: this.logger,
      onRequest: method => { this.metrics.ipcRequests.inc({ method }) },
      onError: (rpcCode, code) => { this.metrics.ipcErrors.inc({ rpc_code: String(rpcCode), code: code ?? '' }) },
      onRefusal: reason => { this.metrics.ipcRefusals.inc({ reason }) },
      onBackpressure: () => { this.metrics.ipcBackpressurePauses.inc() }
    })
    this.startedAt = 0
    this.generating = 0
    this.state = 'idle'
    this.versions = createChainModelVersions({ store: () => this.store, evalWindows: () => this.evalWindows })
    this.inference = createInferenceService({ store: () => this.store, backend: init.config.backend, workers: init.config.workers, versions: this.versions, observer: this.metrics.observer })
    this.generate = meteredGenerate(async (params, onToken, signal) => {
      this.generating++
      try {
        return await this.mesh.generate(params, onToken, signal)
      } finally {
        this.generating--
      }
    }, this.metrics)
    this.dashboard = init.config.httpListen != null
      ? createDashboardFeed({
        logger: this.logger,
        sections: dashboardSections({
          version: blydVersion(),
          startedAt: () => this.startedAt,
          peerId: () => this.identityValue?.peerId.toString(),
          store: () => this.storeValue,
          evalWindows: () => this.evalWindowsValue,
          mesh: () => this.meshValue,
          inference: this.inference,
          learning: () => this.validatorValue != null ? { validator: this.validatorValue.status() } : undefined,
          training: () => this.trainJobs.jobs(),
          ledger: async () => this.identityValue != null ? ledgerStatus(this.ledger, this.identityValue.publicKey, this.outboxValue?.pending ?? 0, LEDGER_STATUS_MAX_AGE_MS) : undefined
        })
      })
      : undefined
    this.http = this.createHttp(init.config)
    const { promise, resolve } = Promise.withResolvers<void>()
    this.stopped = promise
    this.resolveStopped = resolve
    registerCoreMethods({
      config: this.config,
      version: blydVersion(),
      startedAt: () => this.startedAt,
      ipc: this.ipc,
      metrics: this.metrics,
      identity: () => this.identity,
      store: () => this.authoringStore,
      backend: () => this.inference.backendName ?? 'none',
      inference: () => this.inference.backendStatus(),
      workers: () => {
        const serving = this.meshValue?.spanServer?.range?.workers
        return { ...this.inference.workersStatus(), ...(serving != null ? { serving } : {}) }
      },
      requestStop: reason => {
        setImmediate(() => { this.stop(reason).catch(err => { this.log.error('daemon.stop.failed', { error: err.message }) }) })
      },
      net: () => {
        const mesh = this.meshValue
        return mesh == null ? undefined : { addrs: mesh.addrs(), connections: mesh.network.libp2p.getConnections().length, bootstrapPeers: this.config.bootstrap.length, serving: mesh.serving(), trainStage: mesh.trainStage() }
      },
      http: () => this.httpStatus(),
      learning: () => this.validatorValue != null ? { validator: this.validatorValue.status(), training: this.trainJobs.jobs() } : undefined,
      ledger: async () => ledgerStatus(this.ledger, this.identity.publicKey, this.outboxValue?.pending ?? 0, LEDGER_STATUS_MAX_AGE_MS)
    })
    registerModelMethods({
      ipc: this.ipc,
      store: () => this.authoringStore,
      signer: () => this.identity.signer,
      inference: this.inference,
      onImported: result => { this.log.info('model.imported', { modelId: result.modelId, blocks: result.blocks, existing: result.existing, bytesWritten: result.bytesWritten }) },
      generate: this.generate
    })
    registerMeshMethods({ ipc: this.ipc, mesh: () => this.mesh })
    registerLearningMethods({
      ipc: this.ipc,
      store: () => this.authoringStore,
      signer: () => this.identity.signer,
      evalWindows: () => this.evalWindows,
      onWritten: () => { this.validatorValue?.kick() },
      onProposed: result => { this.log.info('delta.proposed', { proposal: result.proposalId, model: result.model, deltas: result.deltaIds.length, bytes: result.bytes }) },
      busy: () => this.generating > 0 || (this.meshValue?.serving()?.sessions ?? 0) > 0,
      trainViaMesh: async (init) => {
        if (this.meshValue == null) {
          throw new InvalidParamsError('train via mesh needs the network (the daemon runs without it)')
        }
        // the authoring view: the proposal's blocks are gossiped (validators learn of it at once)
        return this.meshValue.train({ ...init, store: this.authoringStore })
      },
      trainJobs: this.trainJobs
    })
    registerLedgerMethods({
      ipc: this.ipc,
      ledger: () => this.ledger,
      store: () => this.authoringStore,
      signer: () => this.identity.signer,
      onSent: result => {
        this.metrics.blocksCreated.inc({ chain: 'A' })
        this.log.info('rewards.sent', { model: result.model, transfer: result.transfer, to: result.to, amount: result.amount, nonce: result.nonce })
      }
    })
  }

  /** The HTTP listener with the OpenAI-compatible routes and /metrics, when httpListen is set. */
  private createHttp (config: BlydConfig): HttpApi | undefined {
    const address = config.httpListen != null ? parseHttpListen(config.httpListen) : undefined
    if (address == null) {
      return undefined
    }
    const http = createHttpApi({
      logger: this.logger,
      onRequest: (route, status) => { this.metrics.httpRequests.inc({ route, status: String(status) }) },
      onRefusal: reason => { this.metrics.httpRefusals.inc({ reason }) }
    }, {
      ...address,
      apiKey: config.httpApiKey,
      maxBodyBytes: config.httpMaxBodyBytes,
      maxConcurrent: config.httpMaxConcurrent
    })
    registerOpenAiRoutes(http, {
      store: () => this.store,
      models: async () => this.inference.list(),
      generate: explainedGenerate(this.generate, () => this.store)
    })
    registerMetricsRoute(http, this.metrics)
    if (this.dashboard != null) {
      registerDashboardRoutes(http, this.dashboard)
    }
    return http
  }

  /** A peer connecting or leaving kicks the dashboard (a page sees it at once, not at the next interval); returns the undo. */
  private watchPeers (mesh: Mesh): () => void {
    const dashboard = this.dashboard
    if (dashboard == null) {
      return () => {}
    }
    const libp2p = mesh.network.libp2p
    const kick = (): void => { dashboard.kick() }
    libp2p.addEventListener('peer:connect', kick)
    libp2p.addEventListener('peer:disconnect', kick)
    return () => {
      libp2p.removeEventListener('peer:connect', kick)
      libp2p.removeEventListener('peer:disconnect', kick)
    }
  }

  private httpStatus (): HttpStatusJson | null {
    const url = this.http?.url
    if (this.http == null || url == null) {
      return null
    }
    return { url, keyRequired: this.http.keyRequired, routes: this.http.router.list(), ...this.http.load() }
  }

  get identity (): Identity {
    if (this.identityValue == null) {
      throw new IpcError('the daemon is not started')
    }
    return this.identityValue
  }

  get store (): ChainStoreApi {
    if (this.storeValue == null) {
      throw new IpcError('the daemon is not started')
    }
    return this.storeValue
  }

  get authoringStore (): ChainStoreApi {
    if (this.authoringValue == null) {
      throw new IpcError('the daemon is not started')
    }
    return this.authoringValue
  }

  get evalWindows (): EvalWindowsCache {
    if (this.evalWindowsValue == null) {
      throw new IpcError('the daemon is not started')
    }
    return this.evalWindowsValue
  }

  get mesh (): Mesh {
    if (this.meshValue == null) {
      throw new IpcError('the daemon is not started')
    }
    return this.meshValue
  }

  get isRunning (): boolean {
    return this.state === 'running'
  }

  async start (): Promise<void> {
    if (this.state !== 'idle') {
      throw new IpcError(`cannot start a daemon that is ${this.state}`)
    }
    this.state = 'starting'
    this.starting = this.startSequence()
    return this.starting
  }

  private async startSequence (): Promise<void> {
    const { dataDir } = this.config
    try {
      await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE })
      const dirStat = await stat(dataDir)
      if ((dirStat.mode & 0o077) !== 0) {
        this.log.warn('datadir.permissions', { dir: dataDir, mode: (dirStat.mode & 0o777).toString(8), hint: 'chmod 700' })
      }
      const { stalePid } = await this.lock.acquire()
      if (stalePid != null) {
        this.log.warn('lock.stale', { pid: stalePid, file: this.lock.file })
      }
      const identity = await loadOrCreateIdentity(dataDir)
      this.identityValue = identity
      this.log.info(identity.created ? 'identity.created' : 'identity.loaded', { peerId: identity.peerId.toString() })

      const store = createChainStore({ path: join(dataDir, CHAIN_DIR_NAME) })
      await store.start()
      this.storeValue = store
      this.evalWindowsValue = new EvalWindowsCache({ store })
      const counts = await store.counts()
      this.log.info('chain.opened', { blocksA: counts.A, blocksB: counts.B })

      await this.inference.start()
      const backend = this.inference.backendStatus()
      this.log.info('backend.selected', { backend: backend.name, ...(backend.adapter != null ? { adapter: describeAdapter(backend.adapter) } : {}), tried: backend.tried.map(t => `${t.name}: ${t.ok ? 'ok' : t.reason ?? 'failed'}`).join('; ') })

      const { config } = this
      // FAULT INJECTION FOR TESTS ONLY (BLYD_TEST_* variables; off when unset)
      const faults = stageFaultsFromEnv(process.env)
      this.disarmFaults = armFaultSignal(faults, process)
      const trainFaults = trainFaultsFromEnv(process.env)
      const disarmStage = this.disarmFaults
      const disarmTrain = armTrainFaultSignal(trainFaults, process)
      this.disarmFaults = () => { disarmStage(); disarmTrain() }
      const outbox = this.receiptOutbox(identity.signer)
      this.outboxValue = outbox
      outbox.start()
      const mesh = createMesh({
        store,
        privateKey: identity.privateKey,
        inference: this.inference,
        logger: this.logger,
        versions: this.versions,
        observer: this.metrics.observer,
        receipts: this.meshReceipts(identity.signer, outbox),
        busy: () => this.generating > 0 || (this.meshValue?.serving()?.sessions ?? 0) > 0
      }, {
        datastorePath: join(dataDir, P2P_DIR_NAME),
        listen: config.listen,
        announce: config.announce,
        bootstrap: config.bootstrap,
        full: config.full,
        model: config.model,
        layers: config.layers,
        recordTtlMs: config.recordTtlMs,
        stepTimeoutMs: config.stepTimeoutMs,
        stepDeadlineFloorMs: config.stepDeadlineFloorMs,
        stageLimits: { maxSessions: config.maxSessions, maxCachePositions: config.maxCachePositions },
        ...(config.memoryBytes != null ? { memoryBytes: config.memoryBytes } : {}),
        replicas: config.replicas,
        replanMs: config.replanMs,
        directChannel: directChannelBind(config),
        faults,
        ...(trainFaults != null ? { trainFaults } : {})
      })
      this.authoringValue = publishingStore(store, block => {
        mesh.publish(block.id)
        this.dashboard?.kick()
      })
      await mesh.start()
      this.meshValue = mesh
      this.unwatchPeers = this.watchPeers(mesh)
      this.log.info('net.started', { peerId: identity.peerId.toString(), addrs: mesh.addrs().join(' '), bootstrap: config.bootstrap.length, full: config.full })
      if (config.bootstrap.length === 0) {
        this.log.info('net.alone', { hint: aloneHint(mesh.addrs()) })
      }

      // measures the proposals of the models whose validator set holds this node's key, in the background
      const validator = createValidatorService({
        store: this.authoringValue,
        signer: identity.signer,
        logger: mesh.network.libp2p.logger,
        evalWindows: this.evalWindowsValue,
        fetchPayload: async (id, options) => { await mesh.network.sync.fetchPayload(id, options) },
        busy: () => this.generating > 0 || (mesh.serving()?.sessions ?? 0) > 0
      })
      validator.start()
      this.validatorValue = validator

      await this.ipc.start()
      await this.http?.start()
      this.startedAt = Date.now()
      if (this.state === 'starting') {
        this.state = 'running'
      }
      this.log.info('daemon.started', { pid: process.pid, dataDir })
    } catch (err) {
      await this.teardown()
      if (this.state === 'starting') {
        this.state = 'stopped'
        this.resolveStopped()
      }
      throw err
    }
  }

  /** Stop everything in reverse order; safe to call more than once. */
  async stop (reason = 'stop requested'): Promise<void> {
    if (this.stopping != null) {
      return this.stopping
    }
    if (this.state === 'idle' || this.state === 'stopped') {
      this.state = 'stopped'
      this.resolveStopped()
      return
    }
    const starting = this.state === 'starting' ? this.starting : undefined
    this.state = 'stopping'
    this.log.info('daemon.stopping', { reason })
    this.stopping = (async () => {
      // a stop during start lets the start finish (or fail) first, then undoes it
      await starting?.catch(() => {})
      const timer = setTimeout(() => {
        this.log.error('daemon.stop.slow', { timeoutMs: STOP_TIMEOUT_MS })
      }, STOP_TIMEOUT_MS)
      timer.unref()
      try {
        await this.teardown()
      } finally {
        clearTimeout(timer)
        this.state = 'stopped'
        this.log.info('daemon.stopped', { pid: process.pid })
        this.resolveStopped()
      }
    })()
    return this.stopping
  }

  /**
   * The mesh's side of the ledger (docs/ledger.md): the client signs its
   * receipts on the live version and the current governance state; the
   * served stage hands receipts to the outbox; a client without balance in
   * the last fold of the model is served at background priority (a model
   * not folded yet is folded in the background meanwhile).
   */
  private meshReceipts (signer: BlockSigner, outbox: ReceiptOutbox): MeshReceipts {
    const clients = new ClientReceipts(signer, async model => {
      const { learning } = await this.ledger.recent(model, LEDGER_STATUS_MAX_AGE_MS)
      return learning.genesis.status === 'ok' ? { version: fromHex(learning.live.id), governance: fromHex(learning.governance.current.id) } : null
    })
    return {
      client: modelHex => clients.forModel(modelHex),
      stage: stageReceipts(outbox),
      priorityFor: (client, modelId, requested) => {
        const fold = this.ledger.folds().find(f => f.ledger.model === modelId)
        if (fold == null && /^[0-9a-f]{64}$/.test(modelId)) {
          void this.ledger.recent(fromHex(modelId), LEDGER_STATUS_MAX_AGE_MS).catch(() => {})
        }
        let balance: bigint | undefined
        try {
          balance = fold != null ? balanceOf(fold.ledger, toHex(parsePeerKey(client))) : undefined
        } catch {
          balance = undefined
        }
        return priorityForBalance(balance, requested)
      }
    }
  }

  /** The stage's receipt outbox: terms, spent nonces and parents read from this node's ledger folds. */
  private receiptOutbox (signer: BlockSigner): ReceiptOutbox {
    const recent = async (model: Uint8Array): Promise<LedgerFold> => this.ledger.recent(model, LEDGER_STATUS_MAX_AGE_MS)
    return createReceiptOutbox({
      store: () => this.authoringStore,
      signer,
      flushIntervalMs: this.config.receiptFlushMs,
      terms: async body => receiptTermsRefusal(await recent(body.model), body),
      spent: async body => receiptNonceSpent((await recent(body.model)).ledger, toHex(body.client), toHex(body.stage), body.nonce),
      parents: async model => {
        const head = ledgerHead((await recent(model)).ledger)
        return head != null ? [Uint8Array.from(Buffer.from(head.block, 'hex'))] : []
      },
      onEvent: (event, count) => {
        this.metrics.ledgerReceiptEvents.inc({ event }, count)
        if (event === 'published') {
          this.metrics.blocksCreated.inc({ chain: 'A' })
        }
      }
    })
  }

  private async teardown (): Promise<void> {
    this.disarmFaults()
    this.unwatchPeers()
    // the dashboard's streams end first: the listener then drains the other requests only
    this.dashboard?.stop()
    await this.http?.stop().catch(err => { this.log.error('http.stop.failed', { error: err.message }) })
    await this.ipc.stop().catch(err => { this.log.error('ipc.stop.failed', { error: err.message }) })
    if (this.validatorValue != null) {
      // a measurement in progress is aborted: nothing is published for it, and it runs again after a restart
      await this.validatorValue.stop().catch(err => { this.log.error('validator.stop.failed', { error: err.message }) })
      this.validatorValue = undefined
    }
    if (this.outboxValue != null) {
      // publish what was co-signed while the network can still gossip it
      await this.outboxValue.stop().catch(err => { this.log.error('receipts.flush.failed', { error: err.message }) })
      this.outboxValue = undefined
    }
    if (this.meshValue != null) {
      // the announcer withdraws the span before libp2p goes
      await this.meshValue.stop().catch(err => { this.log.error('net.stop.failed', { error: err.message }) })
      this.meshValue = undefined
    }
    await this.inference.stop().catch(err => { this.log.error('inference.stop.failed', { error: err.message }) })
    if (this.storeValue != null) {
      await this.storeValue.stop().catch(err => { this.log.error('chain.stop.failed', { error: err.message }) })
      this.storeValue = undefined
      this.authoringValue = undefined
      this.evalWindowsValue = undefined
    }
    await this.lock.release().catch(err => { this.log.error('lock.release.failed', { error: err.message }) })
  }
}

export function createDaemon (init: DaemonInit): Daemon {
  return new Daemon(init)
}
