/** Shared pieces of the training tests: the tiny fixture's weights as f32 and a whole-model stage. */
import { TrainStage } from '../../../src/learning/train/stage.ts'
import { PROJECTIONS } from '../../../src/learning/train/stage.ts'
import { Prng } from '../../../src/model/prng.ts'
import { toFloat32 } from '../../../src/model/safetensors/dtypes.ts'
import { loadFixture } from '../../model/fixtures.ts'
import type { TrainMode } from '../../../src/learning/train/stage.ts'
import type { Qwen3Config } from '../../../src/model/qwen3/config.ts'

export async function tinyWeights (): Promise<{ config: Qwen3Config, weights: Map<string, Float32Array> }> {
  const f = await loadFixture('untied-f32')
  const weights = new Map<string, Float32Array>()
  for (const [name, t] of f.tensors) {
    weights.set(name, toFloat32(t))
  }
  return { config: f.config, weights }
}

export function loraMode (rank = 4): TrainMode {
  return { full: false, rank, alpha: rank, targets: PROJECTIONS }
}

export const FULL: TrainMode = { full: true, rank: 1, alpha: 1, targets: PROJECTIONS }

export function wholeStage (config: Qwen3Config, weights: Map<string, Float32Array>, mode: TrainMode, seed = 1): TrainStage {
  return new TrainStage({ config, weights, mode, seed, start: 0, end: config.numLayers, embedding: true, head: true })
}

/** A tiny corpus with structure to learn: noisy runs of a few repeating motifs. */
export function corpus (count: number, length: number, seed: number): Uint32Array[] {
  const rng = new Prng(seed)
  const motifs = [[5, 17, 33, 2], [100, 101, 102, 103, 104], [250, 7, 250, 9]]
  const out: Uint32Array[] = []
  for (let s = 0; s < count; s++) {
    const ids: number[] = []
    while (ids.length < length) {
      ids.push(...motifs[Math.floor(rng.next() * motifs.length)])
    }
    out.push(Uint32Array.from(ids.slice(0, length)))
  }
  return out
}
