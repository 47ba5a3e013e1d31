/**
 * `blyd delta propose`: a Hugging Face checkpoint of a model's architecture
 * becomes one Delta block per changed unit (chain B) and a Proposal block
 * (chain A) against the model's live version (protocols/delta.md,
 * "Computing a delta from a checkpoint"; protocols/learning-blocks.md).
 *
 * 1. The checkpoint is read with the importer's reader and checks
 * (model/import/checkpoint-source.ts), then compared with the model: the
 * same architecture (config) and, per unit, the same tensor names and
 * shapes (dtypes may differ: every float dtype is upcast to f32).
 * 2. Per unit: diff = checkpoint f32 - live f32 (version-weights.ts), the
 * codec, the canonical payload; units whose diff is all zero are skipped.
 * 3. Claimed losses: the proposer's own mean eval loss of the live weights
 * and of live + the decoded deltas (what validators will load), on the
 * first `claimWindows` eval windows of the dataset. Information only: the
 * rule never reads them.
 * 4. The Delta blocks, then the Proposal naming them, the live version, the
 * current governance state, the dataset and the claims.
 *
 * Ordering and durability: nothing is written before every check passed
 * and every delta and both losses were computed; a crash between the Delta
 * blocks and the Proposal leaves Delta blocks no proposal names (harmless:
 * the fold only reads a proposal's deltas). Memory: the whole model's live
 * weights in f32 (4 bytes per parameter), the changed units' candidate
 * tensors, and one whole model in tfjs at a time for the claims.
 */
import { findUnitBlock, loadModelManifest } from '../model/chain-loader.ts'
import { openImportSource } from '../model/import/checkpoint-source.ts'
import { SafetensorsCheckpoint } from '../model/safetensors/checkpoint.ts'
import { DELTA_CODECS, decodeDeltaPayload, encodeDeltaPayload } from '../protocols/delta.ts'
import { fromHex, toHex } from '../protocols/hex.ts'
import { DEFAULT_CLAIM_WINDOWS } from './constants.ts'
import { findDataset, loadDatasetWindows } from './dataset-store.ts'
import { applyDelta } from './delta-apply.ts'
import { encodeDelta } from './delta-encode.ts'
import { meanLoss } from './eval-loss.ts'
import { deltaBlock, proposalBlock } from './new-blocks.ts'
import { measureWindows } from './pol/measure.ts'
import { toMicroNats } from './pol/rule.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import { foldOf, pickModel, requireGenesis } from './pol-models.ts'
import { loadWholeModel, unitWeights } from './version-weights.ts'
import { weightDiff } from './weight-diff.ts'
import type { DatasetWindows } from './dataset-windows.ts'
import type { F32Tensors } from './f32-tensors.ts'
import type { EvalWindowsCache } from './fold/eval-windows.ts'
import type { UnitWeights } from './version-weights.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { ImportSource } from '../model/import/checkpoint-source.ts'
import type { Qwen3Config } from '../model/qwen3/config.ts'
import type { RawTensor } from '../model/safetensors/dtypes.ts'
import type { DeltaCodec } from '../protocols/delta.ts'
import type { ProposeResultJson } from '../protocols/ipc-learning.ts'

export interface ProposeInit {
  store: ChainStoreApi
  signer: BlockSigner
  /** model id (hex or unique prefix); default: the only model on chain A */
  model?: string
  /** the checkpoint folder */
  checkpoint: string
  /** the dataset the validators sample (name or id prefix) */
  dataset: string
  /** default f32 (lossless) */
  codec?: DeltaCodec
  /** sparse: fraction of each tensor's elements kept (default 0.01) */
  density?: number
  /** lowrank: rank of each 2-D tensor (default 16) */
  rank?: number
  /** eval windows the claimed losses are measured on (the first ones; default DEFAULT_CLAIM_WINDOWS) */
  claimWindows?: number
  /** the fold's eval windows cache (the daemon's; a fresh one when not given) */
  evalWindows?: EvalWindowsCache
  /** tensor-parallel worker threads for the claims' forward passes (default 0) */
  workers?: number
  signal?: AbortSignal
}

/** The architecture fields a delta depends on. */
const ARCH_FIELDS = ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'tieWordEmbeddings', 'rmsNormEps', 'ropeTheta'] as const satisfies ReadonlyArray<keyof Qwen3Config>

/** Throws LearningError CHECKPOINT unless `source` has `manifest`'s architecture, units, tensor names and shapes. */
export function checkSameArchitecture (manifest: ModelManifest, source: ImportSource): void {
  for (const key of ARCH_FIELDS) {
    if (manifest.qwen3[key] !== source.config[key]) {
      throw new LearningError(LearningErrorCode.CHECKPOINT, `${source.dir}: config ${key} is ${String(source.config[key])}, model ${manifest.idHex} has ${String(manifest.qwen3[key])}: a delta needs the model's architecture`)
    }
  }
  if (source.units.length !== manifest.units.length) {
    throw new LearningError(LearningErrorCode.CHECKPOINT, `${source.dir}: ${source.units.length} units, model ${manifest.idHex} has ${manifest.units.length}`)
  }
  for (const [i, unit] of manifest.units.entries()) {
    const specs = source.units[i].specs
    const want = unit.tensors
    const same = specs.length === want.length && specs.every((s, k) => s.name === want[k].name && s.shape.length === want[k].shape.length && s.shape.every((d, j) => d === want[k].shape[j]))
    if (!same) {
      throw new LearningError(LearningErrorCode.CHECKPOINT, `${source.dir}: unit ${unit.unit} holds ${specs.map(s => `${s.name} [${s.shape.join(', ')}]`).join('; ')}, the model's holds ${want.map(s => `${s.name} [${s.shape.join(', ')}]`).join('; ')}`)
    }
  }
}

function checkOptions (init: ProposeInit): { codec: DeltaCodec, claimWindows: number } {
  const codec = init.codec ?? 'f32'
  if (!(DELTA_CODECS as readonly string[]).includes(codec)) {
    throw new LearningError(LearningErrorCode.OPTION, `codec must be one of ${DELTA_CODECS.join(', ')} (got ${JSON.stringify(codec)})`)
  }
  const claimWindows = init.claimWindows ?? DEFAULT_CLAIM_WINDOWS
  if (!Number.isSafeInteger(claimWindows) || claimWindows < 2) {
    throw new LearningError(LearningErrorCode.OPTION, `claim windows must be an integer >= 2 (got ${claimWindows})`)
  }
  return { codec, claimWindows }
}

/** One unit's delta, computed and encoded, not yet written. */
interface UnitDelta {
  unit: number
  payload: Uint8Array
  tensors: number
  params: number
  maxAbsError: number
  errorSquares: number
  diffSquares: number
  inexact: number
}

/** The checkpoint's tensors of one unit (read from disk). */
async function checkpointUnit (ck: SafetensorsCheckpoint, names: readonly string[]): Promise<Map<string, RawTensor>> {
  const out = new Map<string, RawTensor>()
  for (const name of names) {
    out.set(name, await ck.read(name))
  }
  return out
}

/** Mean losses of `live` and of `candidate` on `windows` of `data` (one whole model in tfjs at a time). */
async function claimedLosses (config: Qwen3Config, live: UnitWeights[], candidate: UnitWeights[], data: DatasetWindows, windows: number[], init: ProposeInit): Promise<{ base: number, after: number }> {
  const measure = async (units: UnitWeights[]): Promise<number> => {
    const model = await loadWholeModel(config, units, { workers: init.workers })
    try {
      return meanLoss(await measureWindows(model, data, windows, { signal: init.signal }))
    } finally {
      model.dispose()
    }
  }
  return { base: await measure(live), after: await measure(candidate) }
}

/** Computes, checks and writes a proposal of `init.checkpoint` (see the file comment). */
export async function proposeCheckpoint (init: ProposeInit): Promise<ProposeResultJson> {
  let ck: SafetensorsCheckpoint | undefined
  try {
    return await proposeUnits(init, async manifest => {
      const source = await openImportSource(init.checkpoint)
      checkSameArchitecture(manifest, source)
      ck = await SafetensorsCheckpoint.open(source.dir)
      return source.dir
    }, async (_unit, names) => checkpointUnit(ck as SafetensorsCheckpoint, names))
  } finally {
    await ck?.close()
  }
}

/**
 * A proposal of weights held in memory (the trainer's result): `candidate`
 * maps tensor names to their new f32 values (stored layout); every other
 * tensor of the model stays the live one. The same path as a checkpoint
 * from step 2 on (diff against the live weights, codec, claims, blocks).
 */
export async function proposeWeights (init: Omit<ProposeInit, 'checkpoint'>, candidate: ReadonlyMap<string, Float32Array>, label = 'trained weights'): Promise<ProposeResultJson> {
  return proposeUnits({ ...init, checkpoint: label }, async manifest => {
    const known = new Map(manifest.units.flatMap(u => u.tensors.map(t => [t.name, t.shape.reduce((a, b) => a * b, 1)] as const)))
    for (const [name, values] of candidate) {
      if (known.get(name) !== values.length) {
        throw new LearningError(LearningErrorCode.CHECKPOINT, `${label}: ${name} (${values.length} values) is not a tensor of model ${manifest.idHex}${known.has(name) ? ` (it has ${known.get(name) ?? 0})` : ''}`)
      }
    }
    return label
  }, async (_unit, names, live) => {
    const out = new Map<string, RawTensor>()
    for (const name of names) {
      const values = candidate.get(name) ?? live.get(name)?.values as Float32Array
      const shape = live.get(name)?.shape as number[]
      out.set(name, { dtype: 'F32', shape: [...shape], data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) })
    }
    return out
  })
}

/** Steps 2 to 4 of the file comment, with the candidate tensors of each unit from `readUnit`. */
async function proposeUnits (init: ProposeInit, checkSource: (manifest: ModelManifest) => Promise<string>, readUnit: (unit: number, names: string[], live: F32Tensors) => Promise<Map<string, RawTensor>>): Promise<ProposeResultJson> {
  const { store, signer } = init
  const { codec, claimWindows } = checkOptions(init)
  const modelId = await pickModel(store, init.model)
  const manifest = await loadModelManifest(store, modelId)
  const fold = await foldOf(store, modelId, init.evalWindows)
  requireGenesis(fold)
  const live = fold.live
  const datasetBlock = await findDataset(store, init.dataset)
  const data = await loadDatasetWindows(store, datasetBlock, manifest)
  const evalWindows = Array.from(data.split.evalWindows)
  if (evalWindows.length < 2) {
    throw new LearningError(LearningErrorCode.OPTION, `dataset ${toHex(datasetBlock.id)} has ${evalWindows.length} eval window(s): validators need at least 2 to measure a gain (add more data or raise its eval-permille)`)
  }

  const sourceLabel = await checkSource(manifest)
  const liveUnits: UnitWeights[] = []
  const candUnits: UnitWeights[] = []
  const deltas: UnitDelta[] = []
  for (const unit of manifest.units) {
    init.signal?.throwIfAborted()
    const tensors = await unitWeights(store, manifest, unit.unit, live)
    liveUnits.push({ unit: unit.unit, tensors })
    const diff = weightDiff(await readUnit(unit.unit, unit.tensors.map(t => t.name), tensors), tensors)
    const enc = encodeDelta(diff.diffs, { codec, density: init.density, rank: init.rank })
    if (enc.delta == null) {
      candUnits.push({ unit: unit.unit, tensors })
      continue
    }
    const payload = encodeDeltaPayload(enc.delta)
    // the candidate exactly as validators will compute it: from the payload's bytes
    const decoded = decodeDeltaPayload(payload, { codec }).delta
    candUnits.push({ unit: unit.unit, tensors: applyDelta(tensors, decoded) })
    deltas.push({
      unit: unit.unit,
      payload,
      tensors: enc.delta.tensors.length,
      params: enc.params,
      maxAbsError: enc.maxAbsError,
      errorSquares: enc.tensors.reduce((s, t) => s + t.errorSquares, 0),
      diffSquares: enc.tensors.reduce((s, t) => s + t.diffSquares, 0),
      inexact: diff.inexact
    })
  }
  if (deltas.length === 0) {
    throw new LearningError(LearningErrorCode.NO_CHANGE, `${sourceLabel} holds exactly the live weights of model ${manifest.idHex} (version ${live.id.slice(0, 12)}): nothing to propose`)
  }

  const claimed = evalWindows.slice(0, claimWindows)
  const losses = await claimedLosses(manifest.qwen3, liveUnits, candUnits, data, claimed, init)
  liveUnits.length = 0
  candUnits.length = 0

  const base = fromHex(live.id)
  const written: Array<{ id: string, delta: UnitDelta }> = []
  for (const d of deltas) {
    init.signal?.throwIfAborted()
    const layer = await findUnitBlock(store, manifest, manifest.units[d.unit])
    if (layer == null) {
      throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `no Layer block of unit ${d.unit} of model ${manifest.idHex} here`)
    }
    const block = await store.createBlock(deltaBlock({ model: modelId, layer: layer.id, unit: d.unit, base, codec, tensors: d.tensors, payload: d.payload }), signer)
    written.push({ id: toHex(block.id), delta: d })
  }
  const proposal = await store.createBlock(proposalBlock({
    model: modelId,
    base,
    governance: fromHex(fold.governance.current.id),
    dataset: datasetBlock.id,
    deltas: written.map(w => fromHex(w.id)),
    claimedBase: toMicroNats(losses.base),
    claimedAfter: toMicroNats(losses.after)
  }), signer)

  const bytes = deltas.reduce((n, d) => n + d.payload.length, 0)
  const params = deltas.reduce((n, d) => n + d.params, 0)
  const errorSquares = deltas.reduce((n, d) => n + d.errorSquares, 0)
  const diffSquares = deltas.reduce((n, d) => n + d.diffSquares, 0)
  return {
    proposalId: toHex(proposal.id),
    deltaIds: written.map(w => w.id),
    bytes,
    compressionRatio: 4 * params / bytes,
    maxAbsError: Math.max(...deltas.map(d => d.maxAbsError)),
    model: manifest.idHex,
    base: live.id,
    governance: fold.governance.current.id,
    dataset: toHex(datasetBlock.id),
    codec,
    changedParams: params,
    relFrobError: diffSquares === 0 ? 0 : Math.sqrt(errorSquares / diffSquares),
    inexact: deltas.reduce((n, d) => n + d.inexact, 0),
    units: written.map(w => ({ unit: w.delta.unit, delta: w.id, bytes: w.delta.payload.length, tensors: w.delta.tensors, params: w.delta.params, maxAbsError: w.delta.maxAbsError })),
    claimed: {
      windows: claimed.length,
      base: Number(toMicroNats(losses.base)),
      after: Number(toMicroNats(losses.after)),
      baseLoss: losses.base,
      afterLoss: losses.after
    }
  }
}
