/**
 * The daemon's core IPC methods. Other parts add theirs with
 * `daemon.ipc.register(name, validator, handler)`; every method's params,
 * result and stream notifications are those IpcMethods (protocols/ipc.ts)
 * gives it.
 */
import { createHash } from 'node:crypto'
import { chainName, toHex } from './block-json.ts'
import { putFromFile, PUT_TYPES } from './chain-put.ts'
import { chainGet, chainInfo, chainPayload, chainTips, chainVerify } from './chain-queries.ts'
import { IPC_PAYLOAD_PIECE_BYTES } from './constants.ts'
import { registerDataMethods } from './data-methods.ts'
import { blockIdHex, noParams, objectParams, oneOf, requiredString } from './params.ts'
import type { PutTypeName } from './chain-put.ts'
import type { BlydConfig } from './config.ts'
import type { Identity } from './identity.ts'
import type { IpcServer } from './ipc-server.ts'
import type { DaemonMetrics } from './metrics.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { LearningStatusJson } from '../protocols/ipc-learning.ts'
import type { LedgerStatusJson } from '../protocols/ipc-ledger.ts'
import type { ServingJson } from '../protocols/ipc-mesh.ts'
import type { BackendStatusJson, HttpStatusJson, WorkersStatusJson } from '../protocols/ipc.ts'

export interface MethodContext {
  config: BlydConfig
  version: string
  startedAt(): number
  ipc: IpcServer
  metrics: DaemonMetrics
  identity(): Identity
  store(): ChainStoreApi
  backend(): string
  /** the inference backend: which one runs and why the others did not */
  inference?(): BackendStatusJson
  /** tensor-parallel worker threads: the setting and those in use */
  workers?(): WorkersStatusJson
  /** stop the daemon after the current response went out */
  requestStop(reason: string): void
  /** the network part of `status`: dialable addresses, open connections, the span served, the train stage's counters */
  net?(): { addrs: string[], connections: number, bootstrapPeers: number, serving: ServingJson | null, trainStage?: { jobsOpened: number, jobsActive: number, units: number, statesSent: number, statesLoaded: number } | null } | undefined
  /** the ledger part of `status`: this node's balances and receipts not yet published */
  ledger?(): Promise<LedgerStatusJson>
  /** the HTTP listener part of `status` (null: off) */
  http?(): HttpStatusJson | null
  /** the learning part of `status`: the validator service */
  learning?(): LearningStatusJson | undefined
}

export function registerCoreMethods (ctx: MethodContext): void {
  const { ipc } = ctx

  ipc.register('status', noParams, async () => {
    const info = await chainInfo(ctx.store())
    const stats = ipc.stats()
    const learning = ctx.learning?.()
    return {
      version: ctx.version,
      peerId: ctx.identity().peerId.toString(),
      pid: process.pid,
      dataDir: ctx.config.dataDir,
      startedAt: ctx.startedAt(),
      uptimeMs: Date.now() - ctx.startedAt(),
      backend: ctx.backend(),
      ...(ctx.inference != null ? { inference: ctx.inference() } : {}),
      ...(ctx.workers != null ? { workers: ctx.workers() } : {}),
      chain: info,
      ...(ctx.net?.() ?? {}),
      ...(ctx.ledger != null ? { ledger: await ctx.ledger() } : {}),
      ...(ctx.http != null ? { http: ctx.http() } : {}),
      ...(learning != null ? { learning } : {}),
      ipc: stats
    }
  })

  ipc.register('id', noParams, () => ({
    peerId: ctx.identity().peerId.toString(),
    publicKey: toHex(ctx.identity().publicKey)
  }))

  ipc.register('chain.info', noParams, async () => chainInfo(ctx.store()))
  ipc.register('chain.tips', noParams, async () => chainTips(ctx.store()))
  ipc.register('chain.get', objectParams<{ id: string }>({ id: blockIdHex }), async ({ id }) => chainGet(ctx.store(), id))
  ipc.register('chain.verify', noParams, async (_params, context) => chainVerify(ctx.store(), context.signal))

  /** streams the payload as `{ data: <base64> }` notifications; result: size and sha-256 */
  ipc.register('chain.payload', objectParams<{ id: string }>({ id: blockIdHex }), async ({ id }, context) => {
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of chainPayload(ctx.store(), id)) {
      hash.update(chunk)
      size += chunk.byteLength
      for (let at = 0; at < chunk.byteLength; at += IPC_PAYLOAD_PIECE_BYTES) {
        const piece = chunk.subarray(at, at + IPC_PAYLOAD_PIECE_BYTES)
        await context.notify({ data: Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength).toString('base64') })
      }
    }
    return { id, size, sha256: hash.digest('hex') }
  })

  const putParams = objectParams<{ payload: string, type: PutTypeName | undefined }>({
    payload: requiredString,
    type: oneOf(Object.keys(PUT_TYPES) as PutTypeName[])
  })
  ipc.register('chain.put', putParams, async ({ payload, type }, context) => {
    try {
      const block = await putFromFile({ store: ctx.store(), signer: ctx.identity().signer, path: payload, type: type ?? 'note', signal: context.signal })
      ctx.metrics.blocksCreated.inc({ chain: chainName(block.header.chain) })
      return { id: toHex(block.id), payloadSize: String(block.header.payloadSize), chunks: block.header.chunkHashes.length }
    } catch (err: any) {
      if (typeof err?.code === 'string' && err.name === 'ChainError') {
        ctx.metrics.chainRejections.inc({ code: err.code })
      }
      throw err
    }
  })

  registerDataMethods({
    ipc,
    store: ctx.store,
    signer: () => ctx.identity().signer,
    onAdded: () => { ctx.metrics.blocksCreated.inc({ chain: 'A' }) }
  })

  ipc.register('metrics', noParams, async () => ({ text: await ctx.metrics.text() }))

  ipc.register('methods', noParams, () => ({ methods: ipc.methodNames() }))

  ipc.register('shutdown', noParams, () => {
    ctx.requestStop('shutdown requested over IPC')
    return { stopping: true, pid: process.pid }
  })
}
