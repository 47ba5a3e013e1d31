/**
 * One Qwen3 decoder layer with random weights, for benches: linear weights
 * uniform in [-0.02, 0.02) from a fixed xorshift32 stream (the same bytes on
 * every run), norms at 1. F32 tensors under layer 0's names.
 */
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { layerTensorNames } from '../../src/model/qwen3/plan.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

export interface RandomLayer {
  tensors: Map<string, RawTensor>
  /** every parameter of the layer */
  params: number
  /** parameters of the linear (matrix) weights only */
  linearParams: number
}

export function randomLayer (c: Qwen3Config): RandomLayer {
  const { hiddenSize: h, intermediateSize: m, numHeads: nH, numKvHeads: kvH, headDim: d } = c
  const names = layerTensorNames(0)
  const shapes: Record<keyof typeof names, number[]> = {
    inputNorm: [h],
    postNorm: [h],
    qNorm: [d],
    kNorm: [d],
    q: [nH * d, h],
    k: [kvH * d, h],
    v: [kvH * d, h],
    o: [h, nH * d],
    gate: [m, h],
    up: [m, h],
    down: [h, m]
  }
  const tensors = new Map<string, RawTensor>()
  let seed = 0x9e3779b9
  let params = 0
  let linearParams = 0
  for (const [role, shape] of Object.entries(shapes) as Array<[keyof typeof names, number[]]>) {
    const n = shape.reduce((a, b) => a * b, 1)
    const f = new Float32Array(n)
    if (shape.length === 1) {
      f.fill(1)
    } else {
      for (let i = 0; i < n; i++) {
        // xorshift32, scaled to [-0.02, 0.02)
        seed ^= seed << 13
        seed ^= seed >>> 17
        seed ^= seed << 5
        f[i] = ((seed >>> 0) / 4294967296 - 0.5) * 0.04
      }
      linearParams += n
    }
    params += n
    tensors.set(names[role], { dtype: 'F32', shape, data: new Uint8Array(f.buffer) })
  }
  return { tensors, params, linearParams }
}

/**
 * A Qwen3 shape of width `hidden` in the 0.6B family's proportions (MLP 3x
 * hidden, head_dim 128, hidden / 64 query heads, hidden / 128 kv heads), for
 * the training benches.
 */
export function qwen3ShapeOfWidth (hidden: number, layers: number, vocab: number): Qwen3Config {
  return parseQwen3Config({
    model_type: 'qwen3',
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: 3 * hidden,
    num_hidden_layers: layers,
    num_attention_heads: hidden / 64,
    num_key_value_heads: hidden / 128,
    head_dim: 128,
    max_position_embeddings: 4096
  })
}
