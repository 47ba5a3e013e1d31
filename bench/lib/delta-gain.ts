/**
 * "A small model that really improved", for the gain-kept figures of
 * bench/delta:
 * - base B: the tiny Qwen3 fixture (../shared/fixtures/qwen3-tiny/untied-f32);
 * - target T = B + a seeded realistic delta (realistic-delta.ts) on every
 * tensor, scaled (relRms) so that the loss gap is clear (keepTop: only
 * the largest entries of that delta, scaled to the same norm: a sparse
 * fine-tune);
 * - data: sequences sampled from T itself (temperature 1, seeded), so T
 * truly has a lower cross-entropy on them than B (the gap is the KL
 * divergence of B from T on T's own text); the windows are held out
 * (nothing is trained on them);
 * - the delta T - B is computed per unit (weightDiff) and encoded with each
 * codec; each B + decoded delta (applied per unit, as nodes do) is
 * evaluated on the same windows (eval-loss.ts).
 * gain kept = (loss(B) - loss(B + codec delta)) / (loss(B) - loss(B + f32 delta)).
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { applyDeltaInPlace } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { meanLoss, windowLosses } from '../../src/learning/eval-loss.ts'
import { cloneF32Tensors, toF32Tensors, toRawTensors } from '../../src/learning/f32-tensors.ts'
import { topKIndices } from '../../src/learning/top-k.ts'
import { weightDiff } from '../../src/learning/weight-diff.ts'
import { Prng } from '../../src/model/prng.ts'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { planUnits } from '../../src/model/qwen3/plan.ts'
import { SafetensorsCheckpoint } from '../../src/model/safetensors/checkpoint.ts'
import { fromFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { Sampler } from '../../src/model/sampling.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { decodeDeltaPayload, encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { realisticDelta, rms } from './realistic-delta.ts'
import type { RealisticDeltaOptions } from './realistic-delta.ts'
import type { DeltaEncodeOptions } from '../../src/learning/delta-encode.ts'
import type { F32Tensor, F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

export const TINY_FIXTURE = fileURLToPath(new URL('../../../shared/fixtures/qwen3-tiny/untied-f32/', import.meta.url))

export interface GainSetup {
  config: Qwen3Config
  base: F32Tensors
  /** the target's stored tensors (the "checkpoint") */
  target: Map<string, RawTensor>
  /** held-out windows sampled from the target */
  windows: number[][]
  lossBase: number
  lossTarget: number
}

async function loadModel (config: Qwen3Config, tensors: F32Tensors): Promise<LayerRange> {
  return LayerRange.load(config, new MapWeightSource(toRawTensors(tensors)), { start: 0, end: config.numLayers, embedding: true, head: true })
}

async function lossOf (config: Qwen3Config, tensors: F32Tensors, windows: number[][]): Promise<number> {
  const model = await loadModel(config, tensors)
  try {
    return meanLoss(await windowLosses(model, windows))
  } finally {
    model.dispose()
  }
}

/** `count` sequences of `length` tokens sampled from `model` (first token uniform, then temperature 1). */
async function sample (model: LayerRange, count: number, length: number, seed: number): Promise<number[][]> {
  const rng = new Prng(seed)
  const out: number[][] = []
  for (let s = 0; s < count; s++) {
    const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1, seed: seed * 1000 + s })
    const ids = [Math.floor(rng.next() * model.config.vocabSize)]
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
  return out
}

/** Builds B, T and T's held-out samples; measures loss(B) and loss(T) on them. */
export async function gainSetup (opts: { delta: RealisticDeltaOptions, windows: number, length: number, seed: number, keepTop?: number }): Promise<GainSetup> {
  const config = parseQwen3Config(await readFile(`${TINY_FIXTURE}config.json`, 'utf8'))
  const ck = await SafetensorsCheckpoint.open(TINY_FIXTURE)
  const raw = new Map<string, RawTensor>()
  try {
    for (const name of ck.names()) {
      raw.set(name, await ck.read(name))
    }
  } finally {
    await ck.close()
  }
  const base = cloneF32Tensors(toF32Tensors(raw))
  const targetF32: F32Tensors = new Map()
  let i = 0
  for (const name of [...base.keys()].sort()) {
    const w = base.get(name) as F32Tensor
    const d = realisticDelta(w.shape, rms(w.values), opts.delta, opts.seed * 7919 + i++)
    if (opts.keepTop != null) {
      // a sparse fine-tune: only the top keepTop of each tensor's entries move, as far in all as the dense delta
      const keep = new Set(topKIndices(d, Math.ceil(opts.keepTop * d.length)))
      let all = 0
      let kept = 0
      for (let j = 0; j < d.length; j++) {
        all += d[j] * d[j]
        if (keep.has(j)) {
          kept += d[j] * d[j]
        } else {
          d[j] = 0
        }
      }
      const scale = kept > 0 ? Math.sqrt(all / kept) : 0
      for (const j of keep) {
        d[j] *= scale
      }
    }
    targetF32.set(name, { shape: w.shape, values: Float32Array.from(w.values, (x, j) => x + d[j]) })
  }
  const target = new Map([...targetF32].map(([name, t]) => [name, { dtype: 'F32' as const, shape: t.shape, data: fromFloat32(t.values, 'F32') }]))
  const tModel = await loadModel(config, targetF32)
  let windows: number[][]
  try {
    windows = await sample(tModel, opts.windows, opts.length, opts.seed)
  } finally {
    tModel.dispose()
  }
  return {
    config,
    base,
    target,
    windows,
    lossBase: await lossOf(config, base, windows),
    lossTarget: await lossOf(config, targetF32, windows)
  }
}

export interface CodecGain {
  codec: string
  options: Omit<DeltaEncodeOptions, 'codec'>
  loss: number
  gainKept: number
  /** |loss - lossless loss| / lossless loss */
  relToLossless: number
  relFrobError: number
  bytes: number
}

/** B + the per-unit deltas of T - B with `options`, through payload bytes and back, evaluated on the windows. */
export async function codecLoss (setup: GainSetup, options: DeltaEncodeOptions): Promise<{ loss: number, relFrobError: number, bytes: number }> {
  const weights = cloneF32Tensors(setup.base)
  const r = proposeRound(setup, weights, options)
  return { loss: await lossOf(setup.config, weights, setup.windows), ...r }
}

/**
 * Proposes T again and again against the live weights, as a proposer
 * aiming at one checkpoint does: round i encodes T - live (so what earlier
 * rounds dropped is carried forward: error feedback for free) and applies
 * it. Returns the loss after each round in `after` and the bytes so far.
 */
export async function iteratedLoss (setup: GainSetup, options: DeltaEncodeOptions, after: number[]): Promise<Array<{ rounds: number, loss: number, bytes: number }>> {
  const weights = cloneF32Tensors(setup.base)
  const out = []
  let bytes = 0
  for (let round = 1; round <= Math.max(...after); round++) {
    bytes += proposeRound(setup, weights, options).bytes
    if (after.includes(round)) {
      out.push({ rounds: round, loss: await lossOf(setup.config, weights, setup.windows), bytes })
    }
  }
  return out
}

/** One proposal of T - weights with `options`, unit by unit through payload bytes, applied to `weights` in place. */
function proposeRound (setup: GainSetup, weights: F32Tensors, options: DeltaEncodeOptions): { relFrobError: number, bytes: number } {
  let es = 0
  let ds = 0
  let bytes = 0
  for (const unit of planUnits(setup.config)) {
    const live: F32Tensors = new Map(unit.tensors.map(t => [t.name, weights.get(t.name) as any]))
    const ck = new Map(unit.tensors.map(t => [t.name, setup.target.get(t.name) as RawTensor]))
    const { diffs } = weightDiff(ck, live)
    const r = encodeDelta(diffs, options)
    for (const t of r.tensors) {
      es += t.errorSquares
      ds += t.diffSquares
    }
    if (r.delta == null) {
      continue
    }
    const payload = encodeDeltaPayload(r.delta)
    bytes += payload.length
    applyDeltaInPlace(live, decodeDeltaPayload(payload, { codec: options.codec }).delta)
  }
  return { relFrobError: ds === 0 ? 0 : Math.sqrt(es / ds), bytes }
}
