/**
 * The ledger as a node holds it: the caches its folds share (block depths,
 * which receipts of a block verify, eval windows), the model a command is
 * about, and the last fold of each model for the cheap readers (`status`,
 * the metrics). The daemon keeps one; an offline command makes one on the
 * data dir's store.
 *
 * Ordering and durability: nothing is written; every `fold` folds the
 * store again (the caches hold only facts of immutable blocks, so a cached
 * fold and a fresh one agree). `recent` returns the last fold of a model
 * when it is younger than `maxAgeMs` and the store has gained no block
 * since, and no Receipt block of it was waiting for its payload.
 */
import { BlockType } from '../../chain/types.ts'
import { resolveModelId } from '../../model/chain-loader.ts'
import { toHex } from '../../protocols/hex.ts'
import { EvalWindowsCache } from '../fold/eval-windows.ts'
import { LedgerError, LedgerErrorCode } from './errors.ts'
import { LedgerCache, foldLedger } from './fold.ts'
import type { LedgerFold } from './fold.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

export interface LedgerServiceInit {
  store(): ChainStoreApi
  /** a cache shared with the node's other learning readers; a private one when absent */
  evalWindows?(): EvalWindowsCache
}

export class LedgerService {
  readonly cache = new LedgerCache()
  private readonly init: LedgerServiceInit
  private windows?: EvalWindowsCache
  private readonly last = new Map<string, { at: number, blocks: number, fold: LedgerFold }>()

  constructor (init: LedgerServiceInit) {
    this.init = init
  }

  get store (): ChainStoreApi {
    return this.init.store()
  }

  /** the eval windows cache its folds read datasets through */
  evalWindows (): EvalWindowsCache {
    const shared = this.init.evalWindows?.()
    if (shared != null) {
      return shared
    }
    this.windows ??= new EvalWindowsCache({ store: this.store })
    return this.windows
  }

  /** Every ModelManifest on chain A, ids ascending. */
  async models (): Promise<Uint8Array[]> {
    const ids: Uint8Array[] = []
    for await (const block of this.store.byType(BlockType.ModelManifest)) {
      ids.push(block.id)
    }
    return ids.sort((a, b) => Buffer.compare(a, b))
  }

  /** `model` (hex id or unique prefix), or the only model on chain A. LedgerError MODEL otherwise. */
  async pickModel (model?: string): Promise<Uint8Array> {
    if (model != null) {
      try {
        return await resolveModelId(this.store, model)
      } catch (err: any) {
        throw new LedgerError(LedgerErrorCode.MODEL, String(err?.message ?? err), { cause: err })
      }
    }
    const ids = await this.models()
    if (ids.length === 1) {
      return ids[0]
    }
    if (ids.length === 0) {
      throw new LedgerError(LedgerErrorCode.MODEL, 'there is no model on chain A, so no ledger (import one first: blyd model import DIR)')
    }
    throw new LedgerError(LedgerErrorCode.MODEL, `${ids.length} models are on chain A, each with its own ledger (${ids.map(id => toHex(id).slice(0, 12)).join(', ')}): name one with --model`)
  }

  /** The ledger of `modelId` folded now (signatures of blocks seen before are not verified again). */
  async fold (modelId: Uint8Array): Promise<LedgerFold> {
    const blocks = (await this.store.counts()).total
    const windows = this.evalWindows()
    const fold = await foldLedger(this.store, modelId, { evalWindows: windows.provider(modelId), cache: this.cache })
    this.last.set(toHex(modelId), { at: Date.now(), blocks, fold })
    return fold
  }

  /** The last fold of `modelId` if still current (file comment), else a new one. */
  async recent (modelId: Uint8Array, maxAgeMs: number): Promise<LedgerFold> {
    const last = this.last.get(toHex(modelId))
    if (last != null && Date.now() - last.at < maxAgeMs && last.fold.ledger.problems.every(p => p.reason !== 'payload-missing')) {
      const blocks = (await this.store.counts()).total
      if (blocks === last.blocks) {
        return last.fold
      }
    }
    return this.fold(modelId)
  }

  /** The folds last computed, by model (for the metrics: nothing is folded on a scrape). */
  folds (): LedgerFold[] {
    return [...this.last.values()].map(v => v.fold)
  }
}
