/**
 * Shared pieces of the Proof-of-Learning tests (in-process here; the
 * 3-daemon acceptance test reuses them): the tiny fixture and checkpoints
 * derived from it, data sampled from a model, a chain store with the model
 * imported (genesis Params included) and an ids dataset, validator-set
 * changes, and validators run in-process with the real code path.
 *
 * "A checkpoint that truly lowers the eval loss": T = the fixture + a seeded
 * realistic delta (bench/lib/realistic-delta.ts: low-rank dominated, heavy
 * tailed, relRms 2 of each tensor's RMS); the dataset = sequences sampled
 * from T itself (temperature 1), so T has a lower cross-entropy than the
 * fixture on held-out windows (the gap is KL(T || fixture) per token, about
 * 4.5% of the loss at relRms 2); the checkpoint = T's weights written as
 * safetensors beside the fixture's config.json.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { realisticDelta, rms } from '../../bench/lib/realistic-delta.ts'
import { addDataset } from '../../src/learning/dataset-store.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { toF32Tensors, toRawTensors } from '../../src/learning/f32-tensors.ts'
import { EvalWindowsCache } from '../../src/learning/fold/eval-windows.ts'
import { importModelWithGenesis } from '../../src/learning/model-genesis.ts'
import { deltaBlock, proposalBlock } from '../../src/learning/new-blocks.ts'
import { changeValidators } from '../../src/learning/pol-commands.ts'
import { foldOf } from '../../src/learning/pol-models.ts'
import { DeltaBodyIndex } from '../../src/learning/validator-checks.ts'
import { planWork } from '../../src/learning/validator-service.ts'
import { attestProposal } from '../../src/learning/validator.ts'
import { versionWeights } from '../../src/learning/version-weights.ts'
import { weightsHash } from '../../src/learning/weights-hash.ts'
import { findUnitBlock, loadModelManifest } from '../../src/model/chain-loader.ts'
import { Prng } from '../../src/model/prng.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { fromFloat32, toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { encodeSafetensors } from '../../src/model/safetensors/writer.ts'
import { Sampler } from '../../src/model/sampling.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { openStore } from '../chain/helpers.ts'
import { fixtureDir, loadFixture } from '../model/fixtures.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockSigner, StoredBlock } from '../../src/chain/types.ts'
import type { DeltaEncodeOptions } from '../../src/learning/delta-encode.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { ModelFold } from '../../src/learning/fold/types.ts'
import type { ValidationOutcome } from '../../src/learning/validator.ts'
import type { ModelManifest } from '../../src/model/chain-loader.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { DeltaCodec } from '../../src/protocols/delta.ts'
import type { DatasetJson } from '../../src/protocols/ipc.ts'
import type { ParamsBody } from '../../src/protocols/params.ts'
import type { ComponentLogger, Logger } from '@libp2p/interface'

/** The tiny fixture (vocab 512, 4 layers, untied, f32). */
export const TINY = fixtureDir('untied-f32')

/** relRms of the target's delta: a clear, real gain (~4.5% of the loss on T's samples). */
export const TARGET_REL_RMS = 2

export function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** The fixture's config and tensors. */
export async function tinyModel (): Promise<{ config: Qwen3Config, tensors: Map<string, RawTensor> }> {
  const f = await loadFixture('untied-f32')
  return { config: f.config, tensors: f.tensors }
}

/** The seeded realistic delta of every tensor of `base` (the same for a seed on every run). */
export function realisticDeltas (base: Map<string, RawTensor>, seed: number, relRms = TARGET_REL_RMS): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  let i = 0
  for (const name of [...base.keys()].sort()) {
    const t = base.get(name) as RawTensor
    out.set(name, realisticDelta(t.shape, rms(toFloat32(t)), { relRms }, seed * 7919 + i++))
  }
  return out
}

/** Seeded Gaussian differences of std `scale` x each tensor's RMS (a "random-noise delta"). */
export function noiseDiffs (base: Map<string, RawTensor>, scale: number, seed: number): Map<string, Float32Array> {
  const rng = new Prng(seed)
  const out = new Map<string, Float32Array>()
  for (const name of [...base.keys()].sort()) {
    const w = toFloat32(base.get(name) as RawTensor)
    const std = scale * rms(w)
    out.set(name, Float32Array.from(w, () => std * rng.normal()))
  }
  return out
}

/** base + k x delta per tensor, stored F32. */
export function shifted (base: Map<string, RawTensor>, deltas: Map<string, Float32Array>, k: number): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>()
  for (const [name, t] of base) {
    const w = toFloat32(t)
    const d = deltas.get(name)
    const v = Float32Array.from(w, (x, j) => d == null ? x : x + k * d[j])
    out.set(name, { dtype: 'F32', shape: [...t.shape], data: fromFloat32(v, 'F32') })
  }
  return out
}

/** base + seeded Gaussian noise of std `scale` x each tensor's RMS (noiseDiffs applied). */
export function noisy (base: Map<string, RawTensor>, scale: number, seed: number): Map<string, RawTensor> {
  return shifted(base, noiseDiffs(base, scale, seed), 1)
}

/** Writes a checkpoint folder: the fixture's config.json and `tensors` as model.safetensors. */
export async function writeCheckpoint (dir: string, tensors: Map<string, RawTensor>): Promise<string> {
  await mkdir(dir, { recursive: true })
  await copyFile(join(TINY, 'config.json'), join(dir, 'config.json'))
  await writeFile(join(dir, 'model.safetensors'), encodeSafetensors([...tensors].sort((a, b) => a[0] < b[0] ? -1 : 1)))
  return dir
}

/** The whole model over `tensors`. */
export async function modelOf (config: Qwen3Config, tensors: Map<string, RawTensor>): Promise<LayerRange> {
  return LayerRange.load(config, new MapWeightSource(toRawTensors(toF32Tensors(tensors))), { start: 0, end: config.numLayers, embedding: true, head: true })
}

/** `count` sequences of `length` tokens sampled from the model (first token uniform, then temperature 1), seeded. */
export async function sampleSequences (config: Qwen3Config, tensors: Map<string, RawTensor>, count: number, length: number, seed: number): Promise<number[][]> {
  const model = await modelOf(config, tensors)
  const rng = new Prng(seed)
  const out: number[][] = []
  try {
    for (let s = 0; s < count; s++) {
      const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1, seed: seed * 100_003 + s })
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

/** JSONL of `{"ids": [...]}` lines (the `data add` ids format). */
export function jsonl (seqs: readonly number[][]): string {
  return seqs.map(ids => JSON.stringify({ ids })).join('\n') + '\n'
}

/** A ComponentLogger that drops everything (in-process services). */
export function silentComponentLogger (): ComponentLogger {
  const make = (): Logger => {
    const log = Object.assign(() => {}, {
      error: () => {},
      trace: () => {},
      enabled: false,
      newScope: () => make()
    })
    return log
  }
  return { forComponent: () => make() }
}

/** A chain store with the tiny model imported by `importer` (its genesis Params included). */
export interface PolWorld {
  dir: string
  store: ChainStore
  importer: BlockSigner
  modelId: Uint8Array
  model: string
  manifest: ModelManifest
  evalWindows: EvalWindowsCache
  bodies: DeltaBodyIndex
}

/** A chain store in `dir` with the model of checkpoint `options.model` (default: the tiny fixture) imported by `importer`. */
export async function polWorld (dir: string, importer: BlockSigner, options: { params?: ParamsBody, model?: string } = {}): Promise<PolWorld> {
  const store = await openStore(dir)
  const imported = await importModelWithGenesis({ store, signer: importer, dir: options.model ?? TINY, ...(options.params != null ? { params: options.params } : {}) })
  const modelId = fromHex(imported.modelId)
  return {
    dir,
    store,
    importer,
    modelId,
    model: imported.modelId,
    manifest: await loadModelManifest(store, modelId),
    evalWindows: new EvalWindowsCache({ store }),
    bodies: new DeltaBodyIndex()
  }
}

/** Stores `seqs` as ids dataset `name` (one window per sequence when each has splitTokens tokens). */
export async function addIdsDataset (w: PolWorld, name: string, seqs: readonly number[][], options: { splitTokens: number, evalPermille: number, signer?: BlockSigner }): Promise<DatasetJson> {
  return addDataset({
    store: w.store,
    signer: options.signer ?? w.importer,
    bytes: new TextEncoder().encode(jsonl(seqs)),
    name,
    format: 'ids',
    model: w.model,
    splitTokens: options.splitTokens,
    evalPermille: options.evalPermille
  })
}

export async function foldWorld (w: PolWorld): Promise<ModelFold> {
  return foldOf(w.store, w.modelId, w.evalWindows)
}

/** Adds `key` to the set: a motion by members[0], votes by the others, until it applies. */
export async function addValidator (w: PolWorld, members: readonly BlockSigner[], key: Uint8Array): Promise<void> {
  for (const m of members) {
    const r = await changeValidators(w.store, m, { model: w.model, add: hexOf(key), evalWindows: w.evalWindows })
    if (r.published?.applied === true) {
      return
    }
  }
  throw new Error(`adding ${hexOf(key)} did not reach quorum with ${members.length} signers`)
}

export interface Attested {
  validator: string
  proposal: string
  block: StoredBlock
  outcome: ValidationOutcome
}

/**
 * Runs `validator` as the validator service would, in-process: every
 * proposal it should attest now (planWork: measured, or stale), with the
 * real code path (attestProposal writes the Attestation to the store).
 */
export async function runValidator (w: PolWorld, validator: BlockSigner): Promise<Attested[]> {
  const out: Attested[] = []
  const key = hexOf(validator.publicKey)
  while (true) {
    const fold = await foldWorld(w)
    const next = planWork(fold, key).find(x => x.plan.kind !== 'wait')
    if (next == null) {
      return out
    }
    const { block, outcome } = await attestProposal({ store: w.store, signer: validator, manifest: w.manifest, fold, proposal: next.proposal, bodies: w.bodies, evalWindows: w.evalWindows })
    out.push({ validator: key, proposal: next.proposal.id, block, outcome })
  }
}

/** The live version of the world's model and the hash of its weights (hex). */
export async function liveState (w: PolWorld): Promise<{ version: string, weightsHash: string }> {
  const fold = await foldWorld(w)
  return { version: fold.live.id, weightsHash: hexOf(weightsHash(await versionWeights(w.store, w.manifest, fold.live))) }
}

/** One Delta block to write by hand: any payload, valid or not. */
export interface RawDelta {
  unit: number
  codec: DeltaCodec
  /** the header's tensor count */
  tensors: number
  payload: Uint8Array
}

/**
 * `k` x `diffs` (tensor name -> difference) as one canonical delta per unit
 * of the world's model that `diffs` touches, encoded with `options.codec`
 * (default f32), units ascending.
 */
export function unitDeltas (w: PolWorld, diffs: Map<string, Float32Array>, k = 1, options: Partial<DeltaEncodeOptions> = {}): RawDelta[] {
  const out: RawDelta[] = []
  for (const unit of w.manifest.units) {
    const tensors: F32Tensors = new Map()
    for (const t of unit.tensors) {
      const d = diffs.get(t.name)
      if (d != null) {
        tensors.set(t.name, { shape: [...t.shape], values: k === 1 ? d : Float32Array.from(d, x => k * x) })
      }
    }
    const enc = encodeDelta(tensors, { codec: 'f32', ...options })
    if (enc.delta != null) {
      out.push({ unit: unit.unit, codec: enc.delta.codec, tensors: enc.delta.tensors.length, payload: encodeDeltaPayload(enc.delta) })
    }
  }
  return out
}

/** Writes Delta blocks by `author` on `base` (default: the live version), one per entry (parents: the model and the unit's Layer block); their ids. */
export async function writeDeltas (w: PolWorld, author: BlockSigner, deltas: readonly RawDelta[], base?: string): Promise<string[]> {
  const baseId = fromHex(base ?? (await foldWorld(w)).live.id)
  const ids: string[] = []
  for (const d of deltas) {
    const layer = await findUnitBlock(w.store, w.manifest, w.manifest.units[d.unit])
    if (layer == null) {
      throw new Error(`no layer block of unit ${d.unit}`)
    }
    const block = await w.store.createBlock(deltaBlock({ model: w.modelId, layer: layer.id, unit: d.unit, base: baseId, codec: d.codec, tensors: d.tensors, payload: d.payload }), author)
    ids.push(hexOf(block.id))
  }
  return ids
}

/** Writes a Proposal by `author` of Delta blocks `deltas` on `base` (default: the live version) in the current governance state; its block. */
export async function writeProposal (w: PolWorld, author: BlockSigner, deltas: readonly string[], options: { dataset: string, base?: string }): Promise<StoredBlock> {
  const fold = await foldWorld(w)
  return w.store.createBlock(proposalBlock({
    model: w.modelId,
    base: fromHex(options.base ?? fold.live.id),
    governance: fromHex(fold.governance.current.id),
    dataset: fromHex(options.dataset),
    deltas: deltas.map(fromHex),
    claimedBase: 0n,
    claimedAfter: 0n
  }), author)
}

/**
 * A proposal written by hand (the blocks `delta propose` writes, with any
 * payload): writeDeltas() then writeProposal() on `base` (default: the live
 * version) naming dataset `dataset` (hex id).
 */
export async function proposeRaw (w: PolWorld, proposer: BlockSigner, deltas: readonly RawDelta[], options: { dataset: string, base?: string }): Promise<{ proposal: string, deltas: string[] }> {
  const ids = await writeDeltas(w, proposer, deltas, options.base)
  const proposal = await writeProposal(w, proposer, ids, options)
  return { proposal: hexOf(proposal.id), deltas: ids }
}
