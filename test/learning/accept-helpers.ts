/**
 * Makes a model's live version change on a chain store the way the
 * network would, without the validator service: real keys, real blocks
 * (src/learning/new-blocks.ts), and an attestation whose numbers are really
 * measured. So the fold accepts the proposal by its own rule, nothing is
 * forced:
 *
 * - the improved checkpoint: a target = the model + seeded Gaussian noise
 * (model/weight-delta.ts perturbTensors), and a dataset of token ids
 * sampled from the target itself (temperature 1, seeded), so the target
 * truly has a lower cross-entropy on it than the base (the gap is the KL
 * divergence of the base from the target on the target's own text; the
 * recipe of bench/lib/delta-gain.ts);
 * - the proposal: per unit, the exact f32 difference target - live weights
 * (weight-diff.ts), coded f32, one Delta block per changed unit and a
 * Proposal of them by the proposer's key, on the live version and the
 * current governance state;
 * - the attestation: by a validator's key, its real seedSig, the eval
 * windows that seed samples (pol/seed.ts sampleFor) of the proposal's
 * dataset (and of the regression datasets), the per-window mean
 * cross-entropy of the base version and of base + the proposal's decoded
 * deltas (eval-loss.ts) in micro-nats, and the verdict the rule
 * (pol/rule.ts) gives those numbers.
 *
 * The genesis Params block (the defaults) is added by the model's importer
 * when the store has none (an import that already wrote one is left as is).
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { addDataset, loadDatasetWindows } from '../../src/learning/dataset-store.ts'
import { windowTokens } from '../../src/learning/dataset-windows.ts'
import { applyDeltaInPlace } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { windowLosses } from '../../src/learning/eval-loss.ts'
import { toRawTensors } from '../../src/learning/f32-tensors.ts'
import { EvalWindowsCache } from '../../src/learning/fold/eval-windows.ts'
import { foldModel } from '../../src/learning/fold/fold.ts'
import { attestationBlock, deltaBlock, paramsBlock, proposalBlock } from '../../src/learning/new-blocks.ts'
import { defaultParams } from '../../src/learning/params-defaults.ts'
import { rule, toMicroNats } from '../../src/learning/pol/rule.ts'
import { sampleFor, signSeed } from '../../src/learning/pol/seed.ts'
import { readDeltaBlock, versionUnitWeights } from '../../src/learning/version-weights.ts'
import { weightDiff } from '../../src/learning/weight-diff.ts'
import { loadLayerRangeFromChain } from '../../src/model/chain-loader.ts'
import { Prng } from '../../src/model/prng.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { LM_HEAD } from '../../src/model/qwen3/plan.ts'
import { fromFloat32, toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { Sampler } from '../../src/model/sampling.ts'
import { perturbTensors } from '../../src/model/weight-delta.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { DatasetFormat } from '../../src/protocols/dataset.ts'
import { encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { ParamsField } from '../../src/protocols/learning-blocks.ts'
import type { BlockSigner, ChainStoreApi } from '../../src/chain/types.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { ModelFold, ProposalExplain, VersionInfo } from '../../src/learning/fold/types.ts'
import type { ModelManifest } from '../../src/model/chain-loader.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { DatasetMeasurement } from '../../src/protocols/attestation.ts'
import type { Delta } from '../../src/protocols/delta.ts'

export function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** The fold of `manifest`'s model in `store` (eval windows read from the stored datasets). */
export async function foldOf (store: ChainStoreApi, manifest: ModelManifest): Promise<ModelFold> {
  return foldModel(store, manifest.id, { evalWindows: new EvalWindowsCache({ store }).provider(manifest.id) })
}

/**
 * The improved checkpoint: every tensor of `base` plus seeded noise of std
 * `scale` x the tensor's RMS (F32), and the output head times `headScale`
 * (default 1). The tiny fixture's random weights give near-uniform
 * next-token distributions (loss ~ ln 512): noise alone moves the loss on
 * the target's own text by well under the 0.5% gain threshold, a sharper
 * head (lower-entropy text) by a few percent, on every window.
 */
export function perturbedTarget (base: Map<string, RawTensor>, options: { scale: number, seed: number, headScale?: number }): Map<string, RawTensor> {
  const out = perturbTensors(base, { scale: options.scale, seed: options.seed })
  const k = options.headScale ?? 1
  const head = out.get(LM_HEAD)
  if (k !== 1 && head != null) {
    out.set(LM_HEAD, { dtype: 'F32', shape: [...head.shape], data: fromFloat32(toFloat32(head).map(x => x * k), 'F32') })
  }
  return out
}

/** `count` sequences of `length` token ids sampled from the model `tensors` (first token uniform, then temperature 1; seeded). */
export async function sampleSequences (config: Qwen3Config, tensors: Map<string, RawTensor>, count: number, length: number, seed: number): Promise<number[][]> {
  const model = await LayerRange.load(config, new MapWeightSource(tensors), { start: 0, end: config.numLayers, embedding: true, head: true })
  const rng = new Prng(seed)
  const out: number[][] = []
  try {
    for (let s = 0; s < count; s++) {
      const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1, seed: seed * 1000 + s })
      const ids = [Math.floor(rng.next() * config.vocabSize)]
      const session = model.createSession()
      try {
        let feed = ids.slice()
        while (ids.length < length) {
          const next = sampler.sample(await model.nextLogits(session, feed))
          ids.push(next)
          feed = [next]
        }
      } finally {
        session.dispose()
      }
      out.push(ids)
    }
  } finally {
    model.dispose()
  }
  return out
}

/** An ids Dataset block of `sequences` for `manifest`'s model; returns its id. */
export async function addIdsDataset (store: ChainStoreApi, signer: BlockSigner, manifest: ModelManifest, name: string, sequences: number[][], split: { splitTokens: number, evalPermille: number }): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(sequences.map(ids => JSON.stringify({ ids })).join('\n') + '\n')
  const json = await addDataset({ store, signer, bytes, name, format: DatasetFormat.IDS, model: manifest.idHex, ...split })
  return fromHex(json.id)
}

/** The genesis Params block (the defaults), by the importer, unless the store holds one for the model already. */
export async function ensureGenesisParams (store: ChainStoreApi, importer: BlockSigner, manifest: ModelManifest): Promise<void> {
  for await (const block of store.byType(BlockType.Params)) {
    const model = block.header.fields.get(ParamsField.MODEL)
    if (model?.kind === 'bytes' && hexOf(model.value) === manifest.idHex) {
      return
    }
  }
  expect(hexOf(importer.publicKey)).to.equal(hexOf(manifest.author), 'the genesis params are the importer\'s')
  await store.createBlock(paramsBlock(manifest.id, defaultParams()), importer)
}

/** Every tensor of `checkpoint` that belongs to `unit` of the manifest. */
function unitCheckpoint (manifest: ModelManifest, checkpoint: Map<string, RawTensor>, unit: number): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>()
  for (const spec of manifest.units[unit].tensors) {
    const t = checkpoint.get(spec.name)
    if (t == null) {
      throw new Error(`the checkpoint lacks ${spec.name}`)
    }
    out.set(spec.name, t)
  }
  return out
}

export interface Proposed {
  proposal: Uint8Array
  proposalHex: string
  deltas: Uint8Array[]
  /** the version the proposal applies to */
  base: VersionInfo
}

/**
 * Delta blocks (f32, the exact difference checkpoint - live weights, per
 * changed unit) and a Proposal of them by `proposer`, on the live version
 * and the current governance state, for `dataset`.
 */
export async function proposeCheckpoint (store: ChainStoreApi, proposer: BlockSigner, manifest: ModelManifest, checkpoint: Map<string, RawTensor>, dataset: Uint8Array): Promise<Proposed> {
  const fold = await foldOf(store, manifest)
  const base = fold.live
  const deltas: Uint8Array[] = []
  for (const u of manifest.units) {
    const live = await versionUnitWeights(store, manifest, base, u.unit)
    const diff = weightDiff(unitCheckpoint(manifest, checkpoint, u.unit), live)
    const delta = encodeDelta(diff.diffs, { codec: 'f32' }).delta
    if (delta == null) {
      continue
    }
    const [layer] = (await store.byModelUnit(manifest.id, u.unit)).filter(b => hexOf(b.header.author) === hexOf(manifest.author))
    const block = await store.createBlock(deltaBlock({ model: manifest.id, layer: layer.id, unit: u.unit, base: fromHex(base.id), codec: 'f32', tensors: delta.tensors.length, payload: encodeDeltaPayload(delta) }), proposer)
    deltas.push(block.id)
  }
  const block = await store.createBlock(proposalBlock({ model: manifest.id, base: fromHex(base.id), governance: fromHex(fold.governance.current.id), dataset, deltas, claimedBase: 0n, claimedAfter: 0n }), proposer)
  return { proposal: block.id, proposalHex: hexOf(block.id), deltas, base }
}

/** A whole-model LayerRange over per-unit f32 tensors. */
async function rangeOf (manifest: ModelManifest, units: F32Tensors[]): Promise<LayerRange> {
  const all = new Map<string, RawTensor>()
  for (const u of units) {
    for (const [name, t] of toRawTensors(u)) {
      all.set(name, t)
    }
  }
  const c = manifest.qwen3
  return LayerRange.load(c, new MapWeightSource(all), { start: 0, end: c.numLayers, embedding: true, head: true })
}

/** The per-unit f32 tensors of `version` + the proposal's deltas (what the next version would be). */
export async function candidateUnits (store: ChainStoreApi, manifest: ModelManifest, version: VersionInfo, proposal: Pick<ProposalExplain, 'deltas'>): Promise<F32Tensors[]> {
  const out: F32Tensors[] = []
  for (const u of manifest.units) {
    const w = await versionUnitWeights(store, manifest, version, u.unit)
    for (const d of proposal.deltas.filter(d => d.unit === u.unit)) {
      const delta: Delta = await readDeltaBlock(store, d.id, { model: manifest.id, unit: u.unit })
      applyDeltaInPlace(w, delta)
    }
    out.push(w)
  }
  return out
}

/**
 * `validator`'s Attestation of proposal `proposalHex`, with its numbers
 * measured as the file comment says; returns the block id and the rule's
 * reason (`ok` when the numbers pass).
 */
export async function attestMeasured (store: ChainStoreApi, validator: BlockSigner, manifest: ModelManifest, proposalHex: string): Promise<{ id: Uint8Array, reason: string }> {
  const fold = await foldOf(store, manifest)
  const proposal = fold.proposals.find(p => p.id === proposalHex)
  if (proposal == null) {
    throw new Error(`no proposal ${proposalHex} in the fold`)
  }
  const base = fold.versions.find(v => v.id === proposal.base)
  const params = fold.governance.history.find(g => g.id === proposal.governance)?.params
  if (base == null || params == null) {
    throw new Error(`proposal ${proposalHex}: its base version or governance params are unknown`)
  }
  const seedSig = await signSeed(validator, fromHex(proposalHex))
  const baseModel = await loadLayerRangeFromChain(store, manifest, { start: 0, end: manifest.qwen3.numLayers, embedding: true, head: true }, {
    id: base.id,
    index: base.index,
    acceptedDeltas: base.acceptedDeltas,
    changedUnits: base.units.map(u => u.unit),
    unitTensors: async (unit) => toRawTensors(await versionUnitWeights(store, manifest, base, unit)),
    weightsHash: async () => { throw new Error('not needed') }
  })
  const candidate = await rangeOf(manifest, await candidateUnits(store, manifest, base, proposal))
  const measurements: DatasetMeasurement[] = []
  try {
    for (const datasetHex of [proposal.dataset, ...params.regressionDatasets]) {
      const block = await store.get(fromHex(datasetHex))
      if (block == null) {
        throw new Error(`dataset ${datasetHex} is not stored`)
      }
      const windows = await loadDatasetWindows(store, block, manifest)
      const sample = sampleFor(seedSig, windows.split.evalWindows, params.sampleWindows)
      const tokens = sample.map(w => windowTokens(windows, w))
      const b = await windowLosses(baseModel, tokens)
      const c = await windowLosses(candidate, tokens)
      measurements.push({ datasetId: fromHex(datasetHex), windows: sample, base: b.map(toMicroNats), cand: c.map(toMicroNats) })
    }
  } finally {
    baseModel.dispose()
    candidate.dispose()
  }
  const [main, ...regressions] = measurements
  const { reason } = rule(main, regressions, params)
  const block = await store.createBlock(attestationBlock({ model: manifest.id, proposal: fromHex(proposalHex), seedSig, reason, measurements }), validator)
  return { id: block.id, reason }
}

/**
 * Proposes `checkpoint` (by `proposer`) and has `validator` attest it with
 * measured numbers; expects the fold to accept it. Returns the new live version.
 */
export async function acceptCheckpoint (store: ChainStoreApi, proposer: BlockSigner, validator: BlockSigner, manifest: ModelManifest, checkpoint: Map<string, RawTensor>, dataset: Uint8Array): Promise<{ proposed: Proposed, version: VersionInfo }> {
  await ensureGenesisParams(store, validator, manifest)
  const proposed = await proposeCheckpoint(store, proposer, manifest, checkpoint, dataset)
  const { reason } = await attestMeasured(store, validator, manifest, proposed.proposalHex)
  expect(reason).to.equal('ok', 'the measured numbers pass the rule')
  const fold = await foldOf(store, manifest)
  const p = fold.proposals.find(x => x.id === proposed.proposalHex)
  expect(p?.status, `proposal ${proposed.proposalHex}: ${p?.reason ?? ''}`).to.equal('accepted')
  expect(fold.live.proposal).to.equal(proposed.proposalHex)
  return { proposed, version: fold.live }
}
