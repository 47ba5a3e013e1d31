/**
 * The train stage service's weights from the chain: a model's live version
 * (the imported units plus every accepted delta, learning/version-weights.ts)
 * for the units a job's layers need (its decoder layers, the head unit on
 * the last stage, the embedding unit where the head is tied to it). Read
 * afresh per job: a job trains on the version live when it opened, and a
 * pinned version that is not the live one is refused.
 */
import { foldOf, requireGenesis } from '../../learning/pol-models.ts'
import { unitWeights } from '../../learning/version-weights.ts'
import { loadModelManifest, resolveModelId } from '../../model/chain-loader.ts'
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import type { TrainStageServiceInit } from './train-stage-service.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

export function chainTrainWeights (store: ChainStoreApi): TrainStageServiceInit['weights'] {
  return async (model, version, layers) => {
    const id = await resolveModelId(store, model)
    const manifest = await loadModelManifest(store, id)
    const fold = await foldOf(store, id)
    requireGenesis(fold)
    if (version !== '' && version !== (fold.live.id ?? '')) {
      throw new TrainProtocolError(TrainProtocolErrorCode.INVALID_ARGUMENT, `weights version ${version} is not the live one (${fold.live.id ?? 'the imported weights'})`)
    }
    const config = manifest.qwen3
    // unit 0 = embedding, 1..L = decoder layers, L + 1 = final norm + head
    const units: number[] = []
    for (let l = layers.start; l < layers.end; l++) {
      units.push(l + 1)
    }
    if (layers.head) {
      units.push(config.numLayers + 1)
      if (config.tieWordEmbeddings) {
        units.push(0)
      }
    }
    if (layers.start === layers.end) {
      // the driver: the embedding alone
      units.push(0)
    }
    const weights = new Map<string, Float32Array>()
    for (const u of units) {
      for (const [name, t] of await unitWeights(store, manifest, u, fold.live)) {
        weights.set(name, t.values)
      }
    }
    return { config, weights }
  }
}
