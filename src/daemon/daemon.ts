/**
 * The daemon: owns the data dir lock, the identity, the chain store, the
 * inference service, the mesh (libp2p network, the span served, generation
 * through peers) and the IPC server, started in that order and stopped in
 * reverse. Blocks authored here (`chain.put`, `model.import`) are gossiped.
 */
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createChainStore } from '../chain/index.ts'
import { ledgerStatus, parsePeerKey } from '../learning/ledger/commands.ts'
import { createReceiptOutbox } from '../learning/ledger/outbox.ts'
import { balanceOf, ledgerHead, receiptNonceSpent, receiptTermsRefusal } from '../learning/ledger/query.ts'
import { ClientReceipts, priorityForBalance, stageReceipts } from '../learning/ledger/receipt-exchange.ts'
import { LedgerService } from '../learning/ledger/service.ts'
import { createMesh } from '../mesh/mesh.ts'
import { publishingStore } from '../mesh/publishing-store.ts'
import { createInferenceService } from '../model/inference-service.ts'
import { armFaultSignal, stageFaultsFromEnv } from '../pipeline/fault-injection.ts'
import { silentLogger } from '../protocols/logger.ts'
import { directChannelBind } from './config.ts'
import { CHAIN_DIR_NAME, DATA_DIR_MODE, LEDGER_STATUS_MAX_AGE_MS, P2P_DIR_NAME, STOP_TIMEOUT_MS } from './constants.ts'
import { IpcError } from './errors.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { IpcServer } from './ipc-server.ts'
import { registerLedgerMethods } from './ledger-methods.ts'
import { DataDirLock } from './lock.ts'
import { registerMeshMethods } from './mesh-methods.ts'
import { registerCoreMethods } from './methods.ts'
import { DaemonMetrics } from './metrics.ts'
import { registerModelMethods } from './model-methods.ts'
import { blydVersion } from './version.ts'
import type { BlydConfig } from './config.ts'
import type { Identity } from './identity.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { LedgerFold } from '../learning/ledger/fold.ts'
import type { ReceiptOutbox } from '../learning/ledger/outbox.ts'
import type { Mesh, MeshReceipts } from '../mesh/mesh.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'

function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

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
  /** the BLY ledger folds of this node (caches shared by the rewards methods, status and metrics) */
  readonly ledger: LedgerService
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
  private startedAt: number
  private state: 'idle' | 'starting' | 'running' | 'stopping' | 'stopped'
  private stopping: Promise<void> | undefined
  private starting: Promise<void> | undefined
  private disarmFaults: () => void = () => {}

  constructor (init: DaemonInit) {
    this.config = init.config
    this.logger = init.logger ?? silentLogger()
    this.log = this.logger.forComponent('bly:daemon')
    this.lock = new DataDirLock({ dataDir: init.config.dataDir })
    this.ledger = new LedgerService({ store: () => this.store })
    this.metrics = new DaemonMetrics({
      chainCounts: async () => this.storeValue?.counts(),
      ipcStats: () => this.ipc.stats(),
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
    this.state = 'idle'
    this.inference = createInferenceService({ store: () => this.store, backend: init.config.backend, workers: init.config.workers })
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
        return mesh == null ? undefined : { addrs: mesh.addrs(), connections: mesh.network.libp2p.getConnections().length, serving: mesh.serving() }
      },
      ledger: async () => ledgerStatus(this.ledger, this.identity.publicKey, this.outboxValue?.pending ?? 0, LEDGER_STATUS_MAX_AGE_MS)
    })
    registerModelMethods({
      ipc: this.ipc,
      store: () => this.authoringStore,
      signer: () => this.identity.signer,
      inference: this.inference,
      onImported: result => { this.log.info('model.imported', { modelId: result.modelId, blocks: result.blocks, existing: result.existing, bytesWritten: result.bytesWritten }) },
      generate: async (params, onToken, signal) => this.mesh.generate(params, onToken, signal)
    })
    registerMeshMethods({ ipc: this.ipc, mesh: () => this.mesh })
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
      const counts = await store.counts()
      this.log.info('chain.opened', { blocksA: counts.A, blocksB: counts.B })

      await this.inference.start()
      const backend = this.inference.backendStatus()
      this.log.info('backend.selected', { backend: backend.name, tried: backend.tried.map(t => `${t.name}: ${t.ok ? 'ok' : t.reason ?? 'failed'}`).join('; ') })

      const { config } = this
      // FAULT INJECTION FOR TESTS ONLY (BLYD_TEST_* variables; off when unset)
      const faults = stageFaultsFromEnv(process.env)
      this.disarmFaults = armFaultSignal(faults, process)
      const outbox = this.receiptOutbox(identity.signer)
      this.outboxValue = outbox
      outbox.start()
      const mesh = createMesh({
        store,
        privateKey: identity.privateKey,
        inference: this.inference,
        logger: this.logger,
        receipts: this.meshReceipts(identity.signer, outbox)
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
        faults
      })
      this.authoringValue = publishingStore(store, block => { mesh.publish(block.id) })
      await mesh.start()
      this.meshValue = mesh
      this.log.info('net.started', { peerId: identity.peerId.toString(), addrs: mesh.addrs().join(' '), bootstrap: config.bootstrap.length, full: config.full })

      await this.ipc.start()
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
    await this.ipc.stop().catch(err => { this.log.error('ipc.stop.failed', { error: err.message }) })
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
    }
    await this.lock.release().catch(err => { this.log.error('lock.release.failed', { error: err.message }) })
  }
}

export function createDaemon (init: DaemonInit): Daemon {
  return new Daemon(init)
}
