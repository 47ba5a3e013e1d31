/**
 * The versions of the models on a chain store (model/weights-version.ts
 * implemented over the fold): which version is live, any version of a
 * model's history by id or prefix, and each version's weights, unit by unit
 * (version-weights.ts), with its weights hash.
 *
 * Caching and ordering: a model's fold is computed once and reused while
 * the store's block count is unchanged and it is younger than foldMaxAgeMs
 * (a payload that completes later, e.g. an attestation's, changes the fold
 * without a new block: the age bound catches that); concurrent callers share
 * one fold. A version object is kept per (model, version id) for the life of
 * this object: it holds ids only, its weights hash once computed (one
 * pass over every unit, units in ascending order, one unit in memory at a
 * time), and the unit materialisations in flight (shared by concurrent
 * loads of the same unit, dropped when done: materialised weights live in
 * the loaded model, not here). Nothing is written to the store.
 */
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { toRawTensors } from './f32-tensors.ts'
import { toHex } from './fold/blocks.ts'
import { EvalWindowsCache } from './fold/eval-windows.ts'
import { foldModel } from './fold/fold.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import { unitWeights } from './version-weights.ts'
import { WeightsHasher } from './weights-hash.ts'
import type { F32Tensors } from './f32-tensors.ts'
import type { ModelFold, VersionInfo } from './fold/types.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { ModelVersions } from '../model/model-versions.ts'
import type { RawTensor } from '../model/safetensors/dtypes.ts'
import type { AcceptedDeltaRef, WeightsVersion } from '../model/weights-version.ts'

/** How long a model's fold is reused at most while no block arrives (ms). */
export const DEFAULT_FOLD_MAX_AGE_MS = 2_000

/** Shortest version id prefix accepted (as for model ids). */
export const MIN_VERSION_PREFIX = 8

export interface ChainModelVersionsInit {
  /** the chain store (a getter: the daemon opens its store after constructing services) */
  store(): ChainStoreApi
  /** the eval windows the fold checks attestation samples against (a getter, like the store; default: a cache of its own) */
  evalWindows?(): EvalWindowsCache
  /** reuse a fold at most this long while the block count is unchanged (default DEFAULT_FOLD_MAX_AGE_MS) */
  foldMaxAgeMs?: number
}

/** A unit, a delta or a payload the weights need is not stored here (yet): the hash is unknown, not wrong. */
function isNotStored (err: any): boolean {
  return (err instanceof LearningError && err.code === LearningErrorCode.PAYLOAD_MISSING) ||
    (err instanceof ModelError && (err.code === ModelErrorCode.BLOCK_MISSING || err.code === ModelErrorCode.MODEL_INCOMPLETE))
}

/** One version of one model over the store (see the file comment). */
class ChainWeightsVersion implements WeightsVersion {
  readonly id: string
  readonly index: number
  readonly acceptedDeltas: readonly AcceptedDeltaRef[]
  readonly changedUnits: readonly number[]
  private readonly info: VersionInfo
  private readonly storeOf: () => ChainStoreApi
  private readonly manifest: ModelManifest
  private readonly inFlight: Map<number, Promise<F32Tensors>>
  private hash?: Promise<string>

  constructor (storeOf: () => ChainStoreApi, manifest: ModelManifest, info: VersionInfo) {
    this.storeOf = storeOf
    this.manifest = manifest
    this.info = info
    this.id = info.id
    this.index = info.index
    this.acceptedDeltas = info.acceptedDeltas.map(d => ({ ...d }))
    this.changedUnits = info.units.filter(u => u.deltas.length > 0).map(u => u.unit)
    this.inFlight = new Map()
  }

  async unitTensors (unit: number): Promise<Map<string, RawTensor> | undefined> {
    if (!this.changedUnits.includes(unit)) {
      return undefined
    }
    return toRawTensors(await this.materialise(unit))
  }

  async weightsHash (): Promise<string | null> {
    this.hash ??= this.computeHash()
    this.hash.catch(() => { this.hash = undefined })
    try {
      return await this.hash
    } catch (err: any) {
      if (isNotStored(err)) {
        return null
      }
      throw err
    }
  }

  /** version-weights.ts for `unit`, one materialisation at a time per unit (concurrent callers share it; not kept after). */
  private async materialise (unit: number): Promise<F32Tensors> {
    let entry = this.inFlight.get(unit)
    if (entry == null) {
      entry = unitWeights(this.storeOf(), this.manifest, unit, this.info)
      this.inFlight.set(unit, entry)
      const done = (): void => {
        if (this.inFlight.get(unit) === entry) {
          this.inFlight.delete(unit)
        }
      }
      entry.then(done, done)
    }
    return entry
  }

  private async computeHash (): Promise<string> {
    const hasher = new WeightsHasher()
    for (const u of [...this.manifest.units].sort((a, b) => a.unit - b.unit)) {
      hasher.addUnit(u.unit, await this.materialise(u.unit))
    }
    return toHex(hasher.digest())
  }
}

interface CachedFold {
  total: number
  at: number
  fold: Promise<ModelFold>
}

export class ChainModelVersions implements ModelVersions {
  private readonly storeOf: () => ChainStoreApi
  private readonly windows?: () => EvalWindowsCache
  private readonly foldMaxAgeMs: number
  private readonly folds: Map<string, CachedFold>
  private readonly versions: Map<string, ChainWeightsVersion>
  private ownWindows?: EvalWindowsCache

  constructor (init: ChainModelVersionsInit) {
    this.storeOf = init.store
    this.windows = init.evalWindows
    this.foldMaxAgeMs = init.foldMaxAgeMs ?? DEFAULT_FOLD_MAX_AGE_MS
    this.folds = new Map()
    this.versions = new Map()
  }

  /** The fold of `manifest`'s model (cached: see the file comment). */
  async fold (manifest: Pick<ModelManifest, 'id' | 'idHex'>): Promise<ModelFold> {
    const store = this.storeOf()
    const total = (await store.counts()).total
    const now = Date.now()
    const cached = this.folds.get(manifest.idHex)
    if (cached != null && cached.total === total && now - cached.at < this.foldMaxAgeMs) {
      return cached.fold
    }
    const entry: CachedFold = { total, at: now, fold: foldModel(store, manifest.id, { evalWindows: this.evalWindows(store).provider(manifest.id) }) }
    this.folds.set(manifest.idHex, entry)
    entry.fold.catch(() => {
      if (this.folds.get(manifest.idHex) === entry) {
        this.folds.delete(manifest.idHex)
      }
    })
    return entry.fold
  }

  async resolve (manifest: ModelManifest, version?: string): Promise<WeightsVersion> {
    const fold = await this.fold(manifest)
    const info = version == null ? fold.live : findVersionByPrefix(fold, manifest.idHex, version)
    const key = `${manifest.idHex}:${info.id}`
    let v = this.versions.get(key)
    if (v == null) {
      v = new ChainWeightsVersion(this.storeOf, manifest, info)
      this.versions.set(key, v)
    }
    return v
  }

  /** Forgets the cached folds (the versions and their hashes stay: a version's weights never change). */
  clear (): void {
    this.folds.clear()
  }

  private evalWindows (store: ChainStoreApi): EvalWindowsCache {
    if (this.windows != null) {
      return this.windows()
    }
    this.ownWindows ??= new EvalWindowsCache({ store })
    return this.ownWindows
  }
}

/** The version of `fold` whose id is `text` or starts with it (>= MIN_VERSION_PREFIX hex characters). */
export function findVersionByPrefix (fold: Pick<ModelFold, 'versions' | 'live'>, modelHex: string, text: string): VersionInfo {
  const hex = text.trim().toLowerCase()
  if (!/^[0-9a-f]+$/.test(hex) || hex.length < MIN_VERSION_PREFIX || hex.length > 64) {
    throw new ModelError(ModelErrorCode.VERSION_NOT_FOUND, `a version id is 64 hex characters or a unique prefix of at least ${MIN_VERSION_PREFIX} (got ${JSON.stringify(text)})`)
  }
  const matches = fold.versions.filter(v => v.id.startsWith(hex))
  if (matches.length === 0) {
    throw new ModelError(ModelErrorCode.VERSION_NOT_FOUND, `model ${modelHex} has no version ${hex} (its ${fold.versions.length} version${fold.versions.length === 1 ? '' : 's'}: ${fold.versions.map(v => v.id.slice(0, 16)).join(', ')}; live ${fold.live.id})`)
  }
  if (matches.length > 1) {
    throw new ModelError(ModelErrorCode.VERSION_AMBIGUOUS, `${matches.length} versions of model ${modelHex} start with ${hex}: ${matches.map(v => v.id).join(', ')}`)
  }
  return matches[0]
}

export function createChainModelVersions (init: ChainModelVersionsInit): ChainModelVersions {
  return new ChainModelVersions(init)
}
