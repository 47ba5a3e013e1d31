/**
 * Which model a learning command is about (named, or the only one on chain
 * A), and its fold with the eval windows read from the store.
 */
import { BlockType } from '../chain/types.ts'
import { resolveModelId } from '../model/chain-loader.ts'
import { toHex } from '../protocols/hex.ts'
import { EvalWindowsCache } from './fold/eval-windows.ts'
import { foldModel } from './fold/fold.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import type { ModelFold } from './fold/types.ts'
import type { ChainStoreApi } from '../chain/types.ts'

/** Every ModelManifest block id on chain A (ids ascending). */
export async function modelIds (store: ChainStoreApi): Promise<Uint8Array[]> {
  const ids: Uint8Array[] = []
  for await (const block of store.byType(BlockType.ModelManifest)) {
    ids.push(block.id)
  }
  return ids.sort((a, b) => Buffer.compare(a, b))
}

/** `model` (hex id or unique prefix), or the only model on chain A when not given. */
export async function pickModel (store: ChainStoreApi, model?: string): Promise<Uint8Array> {
  if (model != null) {
    return resolveModelId(store, model)
  }
  const ids = await modelIds(store)
  if (ids.length === 1) {
    return ids[0]
  }
  if (ids.length === 0) {
    throw new LearningError(LearningErrorCode.MODEL, 'there is no model on chain A (import one first: blyd model import DIR)')
  }
  throw new LearningError(LearningErrorCode.MODEL, `${ids.length} models are on chain A (${ids.map(id => toHex(id).slice(0, 12)).join(', ')}): name one with --model`)
}

/** The fold of `modelId`, its eval windows read through `cache` (a fresh one when not given). */
export async function foldOf (store: ChainStoreApi, modelId: Uint8Array, cache?: EvalWindowsCache): Promise<ModelFold> {
  const windows = cache ?? new EvalWindowsCache({ store })
  return foldModel(store, modelId, { evalWindows: windows.provider(modelId) })
}

/** LearningError NO_GENESIS unless the fold has usable genesis params. */
export function requireGenesis (fold: ModelFold): void {
  if (fold.genesis.status !== 'ok') {
    const why = fold.genesis.status === 'missing'
      ? 'it has no genesis Params block (imported before Proof-of-Learning existed: its importer re-runs blyd model import to write it)'
      : `its genesis Params block is ${fold.genesis.status}`
    throw new LearningError(LearningErrorCode.NO_GENESIS, `model ${fold.model} cannot judge proposals: ${why}`)
  }
}
