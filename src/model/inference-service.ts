/**
 * The inference service: picks the tfjs backend once (start()), loads whole
 * models from the chain on demand (kept in a small LRU cache), and runs
 * requests one at a time (tfjs is process-wide state). The daemon serves it
 * over IPC (`model.*`, `generate`); `blyd ... --local` runs it in-process.
 */
import { availableParallelism } from 'node:os'
import { BlockType, equalBytes } from '../chain/index.ts'
import { toHex } from '../protocols/hex.ts'
import { BackendName, selectBackend } from './backend.ts'
import { loadLayerRangeFromChain, loadModelManifest, resolveModelId, unitStates } from './chain-loader.ts'
import { isDemoConfig } from './demo-defaults.ts'
import { ModelError, ModelErrorCode } from './errors.ts'
import { localTokenModel } from './generation/local-session.ts'
import { checkPromptParams, eosTokenIdsOf, resolvePrompt, samplingOf, speculationOf } from './generation/request.ts'
import { runGeneration } from './generation/runner.ts'
import { LayerField, ManifestField } from './import/constants.ts'
import { tokenizerFromManifest } from './import/manifest-tokenizer.ts'
import { tf } from './qwen3/tf.ts'
import { elementCount } from './safetensors/dtypes.ts'
import { resolveWorkers } from './workers.ts'
import type { BackendPreference, BackendSelection } from './backend.ts'
import type { ModelManifest, UnitState } from './chain-loader.ts'
import type { GenerationObserver } from './generation/observer.ts'
import type { ModelVersions } from './model-versions.ts'
import type { LayerRange } from './qwen3/layer-range.ts'
import type { ChatTokenizer } from './tokenizer.ts'
import type { WeightsVersion } from './weights-version.ts'
import type { WorkersSetting } from './workers.ts'
import type { ChainStoreApi, StoredBlock } from '../chain/index.ts'
import type { BackendStatusJson, GenerateParams, GenerateResult, GenerateTokenJson, LogitsResult, ModelDetailsJson, ModelSummaryJson, WorkersStatusJson } from '../protocols/ipc.ts'

export const DEFAULT_MAX_LOADED_MODELS = 2

/**
 * Most units `list` looks up for a manifest whose payload is not stored
 * (its header's unit count is unchecked until the payload is read; a Qwen3
 * model has its layers + 2).
 */
export const MAX_LISTED_UNITS = 1024

export interface InferenceServiceInit {
  /** the chain store (a getter: the daemon opens its store after constructing services) */
  store(): ChainStoreApi
  /** auto | tensorflow | wasm | cpu; the daemon's names tfjs-node-gpu / tfjs-node mean tensorflow */
  backend?: string
  /** whole models kept loaded (least recently used is dropped first), default 2 */
  maxLoadedModels?: number
  /** tensor-parallel worker threads per loaded model: 'auto' (default, see workers.ts) or a count */
  workers?: WorkersSetting
  /** told of each step of a local generation (the daemon's metrics) */
  observer?: GenerationObserver
  /**
   * The versions of the models (learning/model-versions.ts): models load in
   * their live version (or the one a request pins), each version loaded once
   * and kept like a model of its own. Absent: every model is its imported
   * weights and a request naming a version fails (ERR_MODEL_VERSION_NOT_FOUND).
   */
  versions?: ModelVersions
}

interface LoadedModel {
  manifest: ModelManifest
  range: LayerRange
  /** the weights version loaded (absent without a ModelVersions) */
  version?: WeightsVersion
  /** undefined until first needed; null for a token-id-only model */
  tokenizer?: ChatTokenizer | null
}

/** Maps a configured backend name to selectBackend()'s preference. */
export function backendPreference (name: string | undefined): BackendPreference {
  switch (name ?? 'auto') {
    case 'auto': return BackendName.AUTO
    case 'tensorflow':
    case 'tfjs-node':
    case 'tfjs-node-gpu': return BackendName.TENSORFLOW
    case 'webgpu': return BackendName.WEBGPU
    case 'wasm': return BackendName.WASM
    case 'cpu': return BackendName.CPU
    default:
      throw new ModelError(ModelErrorCode.BACKEND_UNAVAILABLE, `unknown backend ${JSON.stringify(name)}, expected auto, tensorflow, webgpu, wasm or cpu`)
  }
}

function fieldString (block: StoredBlock, key: string): string {
  const f = block.header.fields.get(key)
  return f?.kind === 'string' ? f.value : ''
}

function fieldUint (block: StoredBlock, key: string): number {
  const f = block.header.fields.get(key)
  return f?.kind === 'uint' ? Number(f.value) : 0
}

export class InferenceService {
  private readonly storeOf: () => ChainStoreApi
  private readonly preference: BackendPreference
  private readonly maxLoaded: number
  readonly workers: WorkersSetting
  private readonly observer: GenerationObserver | undefined
  private readonly versions?: ModelVersions
  /** by model id (hex), or `model@version` when versions are read; most recently used last */
  private readonly loaded: Map<string, LoadedModel>
  private selection: BackendSelection | undefined
  private selectionError: (Error & { tried?: BackendSelection['tried'] }) | undefined
  private queue: Promise<void>
  private started: boolean

  constructor (init: InferenceServiceInit) {
    this.storeOf = init.store
    this.preference = backendPreference(init.backend)
    this.maxLoaded = Math.max(1, init.maxLoadedModels ?? DEFAULT_MAX_LOADED_MODELS)
    this.workers = init.workers ?? 'auto'
    this.observer = init.observer
    this.versions = init.versions
    this.loaded = new Map()
    this.queue = Promise.resolve()
    this.started = false
  }

  /**
   * Selects the backend. A backend named explicitly that cannot start throws;
   * `auto` always ends on cpu at worst.
   */
  async start (): Promise<void> {
    if (this.started) {
      return
    }
    // production mode: no debug checks, and no tfjs banners on the console (stdout/stderr belong to the CLI)
    tf.env().set('PROD', true)
    try {
      this.selection = await selectBackend(this.preference)
      if (this.selection.name === 'webgpu' && typeof this.workers === 'number' && this.workers > 0) {
        throw new ModelError(ModelErrorCode.BAD_INPUT, `--workers ${this.workers} cannot run on webgpu (one GPU device per process, no worker threads): use --workers 0 or auto`)
      }
    } catch (err: any) {
      this.selectionError = err
      throw err
    }
    this.started = true
  }

  async stop (): Promise<void> {
    await this.exclusive(async () => {
      const loaded = [...this.loaded.values()]
      this.loaded.clear()
      await Promise.all(loaded.map(async m => { await m.range.close() }))
    })
    this.started = false
  }

  /** The backend as `status` reports it. */
  backendStatus (): BackendStatusJson {
    if (this.selection != null) {
      const { name, tried, hugePages, adapter } = this.selection
      return { name, preference: this.preference, tried, ...(hugePages != null ? { hugePages } : {}), ...(adapter != null ? { adapter } : {}) }
    }
    return {
      name: null,
      preference: this.preference,
      tried: this.selectionError?.tried ?? [],
      ...(this.selectionError != null ? { error: this.selectionError.message } : {})
    }
  }

  get backendName (): string | null {
    return this.selection?.name ?? null
  }

  /** The worker threads of a model with `config` loaded now, on the backend that runs. */
  workersFor (config: ModelManifest['qwen3']): number {
    return resolveWorkers(this.workers, config, { backend: this.backendName })
  }

  /** The workers setting and the worker threads of each loaded model, as `status` reports them. */
  workersStatus (): WorkersStatusJson {
    return {
      setting: this.workers,
      cores: availableParallelism(),
      loaded: [...this.loaded.values()].map(m => ({ model: m.manifest.idHex, workers: m.range.workers }))
    }
  }

  /**
   * Every model manifest on chain A, with how much of it is stored locally:
   * `missingUnits` names each unit whose layer block or payload is absent
   * (e.g. after a crash mid-import), `complete` is false while any is.
   */
  async list (): Promise<ModelSummaryJson[]> {
    const store = this.storeOf()
    const out: ModelSummaryJson[] = []
    for await (const block of store.byType(BlockType.ModelManifest)) {
      out.push(await this.summary(store, block))
    }
    return out
  }

  /** One model in detail; with versions read, `version` (default the live one) with its accepted deltas and weights hash. */
  async show (model: string, version?: string): Promise<ModelDetailsJson> {
    const store = this.storeOf()
    const id = await resolveModelId(store, model)
    const manifest = this.manifestOf(toHex(id)) ?? await loadModelManifest(store, id)
    const block = await store.get(id) as StoredBlock
    const states = await unitStates(store, manifest)
    const summary = await this.summary(store, block, { manifest, states })
    const c = manifest.qwen3
    const unitBlocks: ModelDetailsJson['unitBlocks'] = []
    let parameters = 0
    const dtypes = new Set<string>()
    for (const [i, u] of manifest.units.entries()) {
      const found = states[i].block
      unitBlocks.push({ unit: u.unit, kind: u.kind, ...(u.layer != null ? { layer: u.layer } : {}), bytes: u.bytes, sha256: u.sha256, block: found != null ? toHex(found.id) : null, stored: states[i].stored })
      for (const t of u.tensors) {
        parameters += elementCount(t.shape)
        dtypes.add(t.dtype)
      }
    }
    const template = manifest.tokenizer != null && (manifest.tokenizer.chatTemplate != null || /"chat_template"\s*:/.test(manifest.tokenizer.tokenizerConfig ?? ''))
    return {
      ...summary,
      config: {
        layers: c.numLayers,
        hidden: c.hiddenSize,
        intermediate: c.intermediateSize,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
        vocab: c.vocabSize,
        tieWordEmbeddings: c.tieWordEmbeddings,
        maxPositionEmbeddings: c.maxPositionEmbeddings
      },
      tokenizer: { present: manifest.tokenizer != null, chatTemplate: template },
      dtypes: [...dtypes].sort(),
      bytes: manifest.units.reduce((n, u) => n + u.bytes, 0),
      parameters,
      unitBlocks,
      ...await this.versionDetails(manifest, version)
    }
  }

  /** `show`'s version fields: nothing without versions read. */
  private async versionDetails (manifest: ModelManifest, version: string | undefined): Promise<Partial<ModelDetailsJson>> {
    const v = await this.versionOf(manifest, version)
    if (v == null || this.versions == null) {
      return {}
    }
    const live = version == null ? v : await this.versions.resolve(manifest)
    const weightsHash = await v.weightsHash()
    return {
      version: v.id,
      versionIndex: v.index,
      liveVersion: live.id,
      acceptedDeltas: v.acceptedDeltas.map(d => ({ proposal: d.proposal, delta: d.delta, unit: d.unit })),
      weightsHash
    }
  }

  /**
   * The weights version `version` (default the live one) of `manifest`'s
   * model; undefined when this service reads no versions (and no version
   * was asked for).
   */
  async versionOf (manifest: ModelManifest, version?: string): Promise<WeightsVersion | undefined> {
    if (this.versions == null) {
      if (version != null) {
        throw new ModelError(ModelErrorCode.VERSION_NOT_FOUND, `version ${version} asked for, but this node reads no model versions`)
      }
      return undefined
    }
    return this.versions.resolve(manifest, version)
  }

  /** The manifest of a loaded model (any version), if one is loaded. */
  private manifestOf (modelHex: string): ModelManifest | undefined {
    for (const m of this.loaded.values()) {
      if (m.manifest.idHex === modelHex) {
        return m.manifest
      }
    }
    return undefined
  }

  /** Logits [ids.length][vocab] of `ids` fed to a fresh session (in `version`, default the live one). */
  async logits (model: string, ids: number[], backend?: string, version?: string): Promise<number[][]> {
    return (await this.logitsResult(model, ids, backend, version)).logits
  }

  /** logits() with the backend, the worker threads and the version that computed them (the `model.logits` result). */
  async logitsResult (model: string, ids: number[], backend?: string, version?: string): Promise<LogitsResult> {
    this.checkBackend(backend)
    return this.exclusive(async () => {
      const m = await this.load(model, version)
      const session = m.range.createSession()
      try {
        const t = await m.range.forwardTokensAsync(session, ids)
        try {
          return { logits: await t.array(), backend: this.backendName ?? 'none', workers: m.range.workers, ...(m.version != null ? { version: m.version.id } : {}) }
        } finally {
          t.dispose()
        }
      } finally {
        session.dispose()
      }
    })
  }

  /** Generates from a prompt (text, chat or ids) in `params.version` (default the live one), calling `onToken` for each token as it comes. */
  async generate (params: Omit<GenerateParams, 'backend'> & { backend?: string }, onToken?: (t: GenerateTokenJson) => void | Promise<void>, signal?: AbortSignal): Promise<GenerateResult> {
    this.checkBackend(params.backend)
    checkPromptParams(params)
    const speculation = speculationOf(params)
    return this.exclusive(async () => {
      const m = await this.load(params.model, params.version)
      const { prompt, tokenizer } = resolvePrompt(params, m.manifest.idHex, () => this.tokenizerOf(m))
      const t0 = performance.now()
      const result = await runGeneration({
        target: localTokenModel(m.range),
        prompt,
        tokenizer,
        eosTokenIds: eosTokenIdsOf(m.manifest.qwen3.eosTokenIds, tokenizer, params.chat != null),
        sampling: samplingOf(params),
        maxNewTokens: params.maxNewTokens,
        stop: params.stop,
        ...(speculation != null ? { draft: { model: await this.loadDraft(speculation.draft, m.manifest.qwen3.vocabSize), k: speculation.k } } : {}),
        onToken,
        ...(this.observer?.step != null ? { onStep: this.observeStep(m.manifest.qwen3.numLayers) } : {}),
        signal
      })
      const seconds = (performance.now() - t0) / 1000
      return {
        tokens: result.tokens,
        text: result.text,
        promptTokens: prompt.length,
        tokensPerSecond: seconds > 0 ? result.tokens.length / seconds : 0,
        finishReason: result.finishReason,
        backend: this.backendName ?? 'none',
        workers: m.range.workers,
        ...(result.speculative != null ? { speculative: result.speculative } : {}),
        ...(m.version != null ? { version: m.version.id } : {})
      }
    })
  }

  /** the observer's step hook for a whole local model of `layers` decoder layers */
  private observeStep (layers: number): (positions: number, ms: number) => void {
    const stage = { start: 0, end: layers }
    return (positions, ms) => { this.observer?.step?.(stage, positions, ms) }
  }

  /**
   * A whole model on the chain as the draft of speculative decoding against a
   * target of `vocab` tokens, loaded (and kept) like any other model.
   */
  async draftModel (model: string, vocab: number): Promise<LayerRange> {
    return this.exclusive(async () => this.loadDraft(model, vocab))
  }

  /** draftModel() inside exclusive(): the vocabulary is checked before any layer is loaded. */
  private async loadDraft (model: string, vocab: number): Promise<LayerRange> {
    const store = this.storeOf()
    const id = await resolveModelId(store, model)
    const manifest = this.manifestOf(toHex(id)) ?? await loadModelManifest(store, id)
    if (manifest.qwen3.vocabSize !== vocab) {
      throw new ModelError(ModelErrorCode.BAD_OPTIONS, `draft model ${manifest.idHex} has a vocabulary of ${manifest.qwen3.vocabSize} tokens, the target ${vocab}: a draft must share the target's vocabulary`)
    }
    return (await this.load(manifest.idHex)).range
  }

  private tokenizerOf (m: LoadedModel): ChatTokenizer | null {
    if (m.tokenizer === undefined) {
      m.tokenizer = m.manifest.tokenizer != null ? tokenizerFromManifest(m.manifest.tokenizer) : null
    }
    return m.tokenizer
  }

  private checkBackend (expected: string | undefined): void {
    if (!this.started || this.selection == null) {
      throw new ModelError(ModelErrorCode.BACKEND_UNAVAILABLE, `no inference backend runs${this.selectionError != null ? `: ${this.selectionError.message}` : ''}`)
    }
    if (expected == null || expected === 'auto') {
      return
    }
    const want = backendPreference(expected)
    if (want !== this.selection.name) {
      throw new ModelError(ModelErrorCode.BACKEND_UNAVAILABLE, `the ${this.selection.name} backend runs here, not ${want} (start the daemon with --backend ${want}, or run with --local)`)
    }
  }

  /**
   * The loaded model in `version` (default the live one), loading it from
   * the chain when needed; each version is an entry of the LRU of its own
   * (dropped, its weights freed, like a model). Call inside exclusive().
   */
  private async load (model: string, version?: string): Promise<LoadedModel> {
    const store = this.storeOf()
    const id = await resolveModelId(store, model)
    const manifest = this.manifestOf(toHex(id)) ?? await loadModelManifest(store, id)
    const weights = await this.versionOf(manifest, version)
    const key = weights == null ? manifest.idHex : `${manifest.idHex}@${weights.id}`
    const cached = this.loaded.get(key)
    if (cached != null) {
      this.loaded.delete(key)
      this.loaded.set(key, cached)
      return cached
    }
    while (this.loaded.size >= this.maxLoaded) {
      const [oldest, m] = this.loaded.entries().next().value as [string, LoadedModel]
      this.loaded.delete(oldest)
      await m.range.close()
    }
    const workers = this.workersFor(manifest.qwen3)
    const range = await loadLayerRangeFromChain(store, manifest, { start: 0, end: manifest.qwen3.numLayers, embedding: true, head: true, workers }, weights)
    const entry: LoadedModel = { manifest, range, ...(weights != null ? { version: weights } : {}) }
    this.loaded.set(key, entry)
    return entry
  }

  /**
   * One manifest and how much of its model is stored here. With the
   * manifest's payload stored, a unit counts only when the layer block the
   * manifest names (size and sha-256) is stored whole (unitStates); without
   * it (a header synced, payload not yet), or when the payload is not a
   * readable manifest, a unit counts when its publisher's layer block is.
   */
  private async summary (store: ChainStoreApi, block: StoredBlock, known?: { manifest: ModelManifest, states: UnitState[] }): Promise<ModelSummaryJson> {
    const id = toHex(block.id)
    let units = fieldUint(block, ManifestField.UNITS)
    let unitsStored = 0
    const missing: number[] = []
    let manifest = known?.manifest
    if (manifest == null && block.payloadComplete) {
      manifest = this.manifestOf(id) ?? await loadModelManifest(store, block.id).catch(() => undefined)
    }
    if (manifest != null) {
      const states = known?.states ?? await unitStates(store, manifest)
      units = manifest.units.length
      missing.push(...states.filter(u => !u.stored).map(u => u.unit))
      unitsStored = units - missing.length
    } else {
      // the header's unit count is only its publisher's word: at most MAX_LISTED_UNITS are looked up
      for (let u = 0; u < Math.min(units, MAX_LISTED_UNITS); u++) {
        const blocks = await store.byModelUnit(block.id, u)
        if (blocks.some(b => b.payloadComplete && equalBytes(b.header.author, block.header.author) && b.header.fields.get(LayerField.SHA256) != null)) {
          unitsStored++
        } else {
          missing.push(u)
        }
      }
    }
    return {
      id,
      name: fieldString(block, ManifestField.NAME),
      arch: fieldString(block, ManifestField.ARCH),
      units,
      unitsStored,
      complete: block.payloadComplete && missing.length === 0,
      missingUnits: missing,
      manifestStored: block.payloadComplete,
      author: toHex(block.header.author),
      loaded: this.manifestOf(id) != null,
      ...(manifest != null && isDemoConfig(manifest.config) ? { randomWeights: true } : {}),
      ...(manifest != null && this.versions != null ? await this.versions.resolve(manifest).then(v => ({ version: v.id }), () => ({})) : {})
    }
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const previous = this.queue
    let release!: () => void
    this.queue = new Promise<void>(resolve => { release = resolve })
    try {
      await previous
      return await fn()
    } finally {
      release()
    }
  }
}

export function createInferenceService (init: InferenceServiceInit): InferenceService {
  return new InferenceService(init)
}

/** tfjs memory in use, for status and tests. */
export function tensorMemory (): { numTensors: number, numBytes: number } {
  const m = tf.memory()
  return { numTensors: m.numTensors, numBytes: m.numBytes }
}
