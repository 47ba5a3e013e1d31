/**
 * A copy of a model's weights with seeded Gaussian noise added: a "target
 * plus a small delta" draft for speculative-decoding tests and benches (a
 * draft that agrees with the target often, but not always).
 */
import { ModelError, ModelErrorCode } from './errors.ts'
import { Prng } from './prng.ts'
import { fromFloat32, toFloat32 } from './safetensors/dtypes.ts'
import { MapWeightSource } from './weight-source.ts'
import type { RawTensor } from './safetensors/dtypes.ts'

export interface WeightDeltaOptions {
  /** noise std relative to each tensor's own RMS (e.g. 0.01) */
  scale: number
  seed?: number
}

/** Every tensor of `tensors` plus noise of std `scale` x the tensor's RMS, stored as F32. */
export function perturbTensors (tensors: Map<string, RawTensor>, options: WeightDeltaOptions): Map<string, RawTensor> {
  if (!Number.isFinite(options.scale) || options.scale < 0) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `scale must be a finite number >= 0, got ${options.scale}`)
  }
  const rng = new Prng(options.seed ?? 1)
  const out = new Map<string, RawTensor>()
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name) as RawTensor
    const x = Float32Array.from(toFloat32(t))
    let ss = 0
    for (let i = 0; i < x.length; i++) {
      ss += x[i] * x[i]
    }
    const std = options.scale * Math.sqrt(ss / Math.max(1, x.length))
    for (let i = 0; i < x.length; i++) {
      x[i] += std * rng.normal()
    }
    out.set(name, { dtype: 'F32', shape: [...t.shape], data: fromFloat32(x, 'F32') })
  }
  return out
}

/** perturbTensors() as a WeightSource. */
export function perturbedSource (tensors: Map<string, RawTensor>, options: WeightDeltaOptions, label = 'perturbed'): MapWeightSource {
  return new MapWeightSource(perturbTensors(tensors, options), label)
}
