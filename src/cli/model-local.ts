/**
 * In-process model work for the CLI when no daemon runs (or with --local):
 * the data dir's chain store under the data dir lock, the node's identity for
 * imports, and an InferenceService on the chosen backend.
 */
import { mkdir } from 'node:fs/promises'
import { DATA_DIR_MODE } from '../daemon/constants.ts'
import { loadOrCreateIdentity } from '../daemon/identity.ts'
import { createChainModelVersions } from '../learning/model-versions.ts'
import { createInferenceService } from '../model/inference-service.ts'
import { withOfflineStore } from './daemon-or-offline.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { Identity } from '../daemon/identity.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { WorkersSetting } from '../model/workers.ts'

/** The data dir's store and identity (both created when absent: an import may be a node's first act). */
export async function withLocalChain<T> (dataDir: string, fn: (store: ChainStoreApi, identity: Identity) => Promise<T>): Promise<T> {
  await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE })
  return withOfflineStore(dataDir, async store => {
    const identity = await loadOrCreateIdentity(dataDir)
    return fn(store, identity)
  })
}

/**
 * An inference service over the data dir's store (reading the models'
 * versions from it), stopped after `fn`. It is
 * started on `backend` (which selects the tfjs backend); null leaves it
 * unstarted, for work that reads the chain only (list, show). `workers`:
 * tensor-parallel worker threads for the model's layers (default auto).
 */
export async function withLocalInference<T> (dataDir: string, backend: string | null, fn: (service: InferenceService) => Promise<T>, workers?: WorkersSetting): Promise<T> {
  return withOfflineStore(dataDir, async store => {
    const service = createInferenceService({ store: () => store, backend: backend ?? 'auto', maxLoadedModels: 1, workers, versions: createChainModelVersions({ store: () => store }) })
    if (backend != null) {
      await service.start()
    }
    try {
      return await fn(service)
    } finally {
      await service.stop()
    }
  })
}
