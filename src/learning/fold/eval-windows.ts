/**
 * The eval windows the fold checks attestations' samples against, read from
 * the stored datasets (protocols/dataset.md) and cached: an ids dataset's
 * windows are its own, a text dataset's depend on the tokenizer of the
 * model reading it (tokenizing a large text is the expensive part, hence
 * the cache). Only successful reads are cached: a dataset whose payload is
 * not stored yet is read again next time. Concurrent reads of one entry
 * share one promise. Bounded by `maxEntries` (oldest evicted first).
 */
import { loadModelManifest } from '../../model/chain-loader.ts'
import { DatasetFormat } from '../../protocols/dataset.ts'
import { DEFAULT_EVAL_WINDOWS_CACHE_ENTRIES } from '../constants.ts'
import { datasetHeader, loadDatasetWindows } from '../dataset-store.ts'
import { DatasetError, DatasetErrorCode } from '../errors.ts'
import { toHex } from './blocks.ts'
import type { EvalWindowsProvider } from './types.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

export interface EvalWindowsCacheInit {
  store: ChainStoreApi
  /** entries kept (default DEFAULT_EVAL_WINDOWS_CACHE_ENTRIES) */
  maxEntries?: number
}

export class EvalWindowsCache {
  private readonly store: ChainStoreApi
  private readonly maxEntries: number
  private readonly entries: Map<string, Promise<Uint32Array>>

  constructor (init: EvalWindowsCacheInit) {
    this.store = init.store
    this.maxEntries = init.maxEntries ?? DEFAULT_EVAL_WINDOWS_CACHE_ENTRIES
    this.entries = new Map()
  }

  /** entries held (including reads in flight) */
  get size (): number {
    return this.entries.size
  }

  /** The provider the fold of model `modelId` uses. */
  provider (modelId: Uint8Array): EvalWindowsProvider {
    return async (datasetId: Uint8Array) => this.get(datasetId, modelId)
  }

  /** The eval window numbers (ascending) of dataset `datasetId` read by model `modelId`. */
  async get (datasetId: Uint8Array, modelId: Uint8Array): Promise<Uint32Array> {
    const block = await this.store.get(datasetId)
    if (block == null) {
      throw new DatasetError(DatasetErrorCode.NOT_FOUND, `no dataset ${toHex(datasetId)} in the store`)
    }
    const header = datasetHeader(block)
    const key = header.format === DatasetFormat.TEXT ? `${toHex(datasetId)}:${toHex(modelId)}` : toHex(datasetId)
    let entry = this.entries.get(key)
    if (entry == null) {
      entry = (async () => {
        const manifest = header.format === DatasetFormat.TEXT ? await loadModelManifest(this.store, modelId) : undefined
        return (await loadDatasetWindows(this.store, block, manifest)).split.evalWindows
      })()
      this.entries.set(key, entry)
      while (this.entries.size > this.maxEntries) {
        this.entries.delete(this.entries.keys().next().value as string)
      }
      entry.catch(() => {
        if (this.entries.get(key) === entry) {
          this.entries.delete(key)
        }
      })
    }
    return entry
  }

  clear (): void {
    this.entries.clear()
  }
}
