/**
 * The sections of the daemon's dashboard snapshot (protocols/dashboard.ts),
 * each read from the part that owns it, the same figures as IPC gives them:
 * `node` (status' identity, backend and serving part), `models` (model
 * list), `swarm` (peers: the live spans from the DHT records, the connected
 * peers), `chain` (chain info), `proposals` and `validators` (one fold per
 * model for both), `learning` (the validator service), `training` (the daemon's training
 * jobs with their loss curves), `ledger` (this node's balances and
 * pending receipts, as in status). A part the daemon
 * does not run yet (before start) makes its section absent. Adding a
 * section (a ledger's balances) is one entry here; the page shows it.
 */
import { proposalJson, validatorsJson } from '../learning/pol-commands.ts'
import { foldOf, modelIds } from '../learning/pol-models.ts'
import { toHex } from '../protocols/hex.ts'
import { chainInfo } from './chain-queries.ts'
import type { DashboardSection } from './http/dashboard-feed.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { EvalWindowsCache } from '../learning/fold/eval-windows.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { DashboardNodeJson, DashboardValidatorsJson } from '../protocols/dashboard.ts'
import type { LearningStatusJson, ProposalJson, TrainJobJson } from '../protocols/ipc-learning.ts'
import type { LedgerStatusJson } from '../protocols/ipc-ledger.ts'

export interface DashboardSectionsContext {
  version: string
  startedAt(): number
  peerId(): string | undefined
  /** the store, once open */
  store(): ChainStoreApi | undefined
  evalWindows(): EvalWindowsCache | undefined
  mesh(): Mesh | undefined
  inference: InferenceService
  learning(): LearningStatusJson | undefined
  /** the daemon's recent training jobs with their loss curves */
  training(): TrainJobJson[]
  /** this node's balances and pending receipts, as `status` gives them */
  ledger(): Promise<LedgerStatusJson | undefined>
}

interface LearningView {
  proposals: ProposalJson[]
  validators: DashboardValidatorsJson[]
}

/** ms one learning view (the folds) serves both of its sections */
const LEARNING_VIEW_MS = 500

export function dashboardSections (ctx: DashboardSectionsContext): Record<string, DashboardSection> {
  let view: { at: number, value: Promise<LearningView | undefined> } | undefined
  /** the folds of every model with its manifest stored: one computation for `proposals` and `validators` */
  const learningView = async (): Promise<LearningView | undefined> => {
    if (view == null || Date.now() - view.at > LEARNING_VIEW_MS) {
      view = { at: Date.now(), value: foldAll(ctx) }
    }
    return view.value
  }
  return {
    node: (): DashboardNodeJson | undefined => {
      const peerId = ctx.peerId()
      const mesh = ctx.mesh()
      if (peerId == null || mesh == null) {
        return undefined
      }
      return {
        peerId,
        version: ctx.version,
        backend: ctx.inference.backendName ?? 'none',
        startedAt: ctx.startedAt(),
        addrs: mesh.addrs(),
        connections: mesh.network.libp2p.getConnections().length,
        serving: mesh.serving()
      }
    },
    models: async () => ctx.store() != null ? ctx.inference.list() : undefined,
    swarm: async (signal) => ctx.mesh()?.peers({}, signal),
    chain: async () => {
      const store = ctx.store()
      return store != null ? chainInfo(store) : undefined
    },
    proposals: async () => (await learningView())?.proposals,
    validators: async () => (await learningView())?.validators,
    learning: () => ctx.learning(),
    training: () => ctx.training(),
    ledger: async () => ctx.ledger()
  }
}

async function foldAll (ctx: DashboardSectionsContext): Promise<LearningView | undefined> {
  const store = ctx.store()
  const evalWindows = ctx.evalWindows()
  if (store == null) {
    return undefined
  }
  const proposals: ProposalJson[] = []
  const validators: DashboardValidatorsJson[] = []
  for (const id of await modelIds(store)) {
    if ((await store.get(id))?.payloadComplete !== true) {
      continue
    }
    try {
      const fold = await foldOf(store, id, evalWindows)
      proposals.push(...fold.proposals.map(p => proposalJson(fold, p)))
      validators.push(validatorsJson(fold))
    } catch (err) {
      validators.push({ model: toHex(id), error: err instanceof Error ? err.message : String(err) })
    }
  }
  return { proposals, validators }
}
