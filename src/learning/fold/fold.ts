/**
 * The fold: the state of a model's learning path (genesis params, validator
 * set and params over time, every motion's and proposal's status with the
 * reason, the version history and the live version) as a deterministic
 * function of the blocks and payloads a node holds. Every node holding the
 * same blocks computes deep-equal results, whatever order they arrived in;
 * ties are broken by block id (bytewise ascending = lowercase hex order).
 *
 * Ordering and durability: the fold reads the store and writes nothing; it
 * is recomputed from scratch on each call (callers re-fold when learning
 * blocks arrive). Payloads not stored yet are reported (`payload-missing`),
 * never guessed.
 */
import { readModelRecords } from './blocks.ts'
import { genesisOf } from './genesis.ts'
import { foldGovernance, paramsJson } from './governance.ts'
import { foldProposals } from './versions.ts'
import type { WindowsLookup } from './attestations.ts'
import type { EvalWindowsProvider, ModelFold, ModelRecords } from './types.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

export interface FoldOptions {
  /** the eval windows of a dataset as this model reads it (EvalWindowsCache#provider in the daemon) */
  evalWindows: EvalWindowsProvider
}

/** The window lookup of one fold: each dataset read at most once, failures returned as values. */
function lookupOnce (provider: EvalWindowsProvider): WindowsLookup {
  const seen = new Map<string, Promise<ArrayLike<number> | Error>>()
  return async (datasetId) => {
    const key = Buffer.from(datasetId).toString('hex')
    let entry = seen.get(key)
    if (entry == null) {
      entry = provider(datasetId).then(
        windows => windows,
        (err: unknown) => err instanceof Error ? err : new Error(String(err)))
      seen.set(key, entry)
    }
    return entry
  }
}

/** The fold of already-read records (foldModel reads them from a store). */
export async function foldRecords (records: ModelRecords, options: FoldOptions): Promise<ModelFold> {
  const genesis = genesisOf(records)
  const governance = foldGovernance(records, genesis)
  const { proposals, versions } = await foldProposals(records, governance, lookupOnce(options.evalWindows))
  const history = governance.history.map(n => n.state)
  return {
    model: records.modelHex,
    author: records.authorHex,
    genesis: genesis.status === 'ok' ? { ...genesis, params: paramsJson(genesis.params) } : genesis,
    governance: {
      history,
      current: history[history.length - 1],
      motions: governance.motions
    },
    proposals,
    versions,
    live: versions[versions.length - 1]
  }
}

/**
 * The state of model `modelId`'s learning path in `store`. Throws FoldError
 * ERR_FOLD_MODEL_NOT_FOUND when the id is no stored ModelManifest.
 */
export async function foldModel (store: ChainStoreApi, modelId: Uint8Array, options: FoldOptions): Promise<ModelFold> {
  return foldRecords(await readModelRecords(store, modelId), options)
}
