/**
 * The dashboard's snapshot (`GET /v1/dashboard/snapshot`, and each
 * `snapshot` event of `GET /v1/dashboard/events`): what one daemon sees of
 * itself and of the swarm, section by section. A section is present when
 * the daemon has that part (`learning` only with a validator service, say);
 * one that failed to compute this time is absent and `errors` says why. New
 * sections (a ledger's balances...) are added as new keys: the page renders
 * a key it has no renderer for as a generic table, so readers must ignore
 * keys they do not know.
 */
import type { ProposalsResult, LearningStatusJson, TrainJobJson, ValidatorsResult } from './ipc-learning.ts'
import type { LedgerStatusJson } from './ipc-ledger.ts'
import type { PeersResult, ServingJson } from './ipc-mesh.ts'
import type { ChainInfoJson, ModelSummaryJson } from './ipc.ts'

/** This node: identity, software, backend, the span it serves and the weights version of it. */
export interface DashboardNodeJson {
  peerId: string
  /** blyd's version */
  version: string
  /** the inference backend in use */
  backend: string
  /** unix ms the daemon started */
  startedAt: number
  /** dialable multiaddrs */
  addrs: string[]
  /** open libp2p connections */
  connections: number
  /** the span served (model, layers, state, weights version, sessions...); null: none */
  serving: ServingJson | null
}

/** A model's validator set, or why its governance could not be read. */
export type DashboardValidatorsJson = ValidatorsResult | { model: string, error: string }

export interface DashboardSnapshotJson {
  /** unix ms the snapshot was taken */
  at: number
  /** increases by one with every snapshot the daemon computes */
  seq: number
  node?: DashboardNodeJson
  /** the models on chain A as this node stores them */
  models?: ModelSummaryJson[]
  /** live spans per model (from the peers' signed records) and the connected peers: what `blyd peers` gives */
  swarm?: PeersResult
  /** block counts and tips of both chains */
  chain?: ChainInfoJson
  /** the proposals of every model, with their status and attestations */
  proposals?: ProposalsResult['proposals']
  /** each model's validator set, quorum and pending motions */
  validators?: DashboardValidatorsJson[]
  /** the validator service of this node */
  learning?: LearningStatusJson
  /** the daemon's recent training jobs with their loss curves */
  training?: TrainJobJson[]
  /** this node's balances and pending receipts, as in status */
  ledger?: LedgerStatusJson
  /** sections that failed this time: their name and the error's message */
  errors: Record<string, string>
  /** sections a later part adds (balances...): rendered generically */
  [section: string]: unknown
}
