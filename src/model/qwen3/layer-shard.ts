import { ModelError, ModelErrorCode } from '../errors.ts'
import { toFloat32 } from '../safetensors/dtypes.ts'
import { requireTensor } from '../weight-source.ts'
import { layerTensorNames } from './plan.ts'
import type { WeightSource } from '../weight-source.ts'
import type { Qwen3Config } from './config.ts'

/**
 * One tensor-parallel slice of a decoder layer, as plain float32 arrays in
 * the stored [out, in] layout (so it can cross to a worker thread).
 * Shard `shard` of `count` holds query heads [shard * H/count, ...), the
 * matching kv heads, and intermediate columns [shard * I/count, ...).
 * q/k/v are fused into one matrix and gate/up into another: one matMul
 * (one pass over the input) each. o and down hold the matching input
 * columns, so each shard's attention and MLP yield a partial sum of the
 * full output; the partial sums of all shards add up to the layer's output.
 */
export interface LayerShardData {
  layer: number
  shard: number
  count: number
  /** query heads and kv heads of this shard */
  heads: number
  kvHeads: number
  /** intermediate columns of this shard */
  inter: number
  inputNorm: Float32Array
  postNorm: Float32Array
  qNorm: Float32Array
  kNorm: Float32Array
  /** [(heads + 2 kvHeads) * head_dim, hidden]: q rows, then k rows, then v rows */
  qkv: Float32Array
  /** [hidden, heads * head_dim] */
  o: Float32Array
  /** [2 inter, hidden]: gate rows, then up rows */
  gateUp: Float32Array
  /** [hidden, inter] */
  down: Float32Array
}

/** Fails with ERR_MODEL_BAD_INPUT unless the config's heads and MLP split evenly into `count` shards. */
export function assertShardable (config: Qwen3Config, count: number): void {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `shard count must be a positive integer, got ${count}`)
  }
  if (config.numKvHeads % count !== 0 || config.intermediateSize % count !== 0) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `${config.numKvHeads} kv heads and intermediate size ${config.intermediateSize} do not split into ${count} shards`)
  }
}

async function read (source: WeightSource, name: string, shape: number[]): Promise<Float32Array> {
  const raw = await requireTensor(source, name)
  if (raw.shape.length !== shape.length || raw.shape.some((d, i) => d !== shape[i])) {
    throw new ModelError(ModelErrorCode.WRONG_SHAPE, `shape [${raw.shape.join(', ')}], config requires [${shape.join(', ')}]`, { file: source.label, tensor: name })
  }
  return toFloat32(raw)
}

/** Columns [c0, c0 + n) of a row-major [rows, cols] matrix. */
function columns (m: Float32Array, rows: number, cols: number, c0: number, n: number): Float32Array {
  if (c0 === 0 && n === cols) {
    return m
  }
  const out = new Float32Array(rows * n)
  for (let r = 0; r < rows; r++) {
    out.set(m.subarray(r * cols + c0, r * cols + c0 + n), r * n)
  }
  return out
}

/** Rows [r0, r0 + n) of several row-major matrices with `cols` columns, stacked. */
function stackRows (cols: number, parts: Array<[Float32Array, number, number]>): Float32Array {
  const out = new Float32Array(parts.reduce((a, [, , n]) => a + n, 0) * cols)
  let at = 0
  for (const [m, r0, n] of parts) {
    out.set(m.subarray(r0 * cols, (r0 + n) * cols), at)
    at += n * cols
  }
  return out
}

/**
 * Reads decoder layer `layer` from `source` (each tensor once, upcast to
 * float32, shapes checked) and cuts it into `count` tensor-parallel shards.
 */
export async function readLayerShards (config: Qwen3Config, source: WeightSource, layer: number, count: number): Promise<LayerShardData[]> {
  assertShardable(config, count)
  const { hiddenSize: h, numHeads: nH, numKvHeads: kvH, headDim: d, intermediateSize: m } = config
  const n = layerTensorNames(layer)
  const inputNorm = await read(source, n.inputNorm, [h])
  const q = await read(source, n.q, [nH * d, h])
  const k = await read(source, n.k, [kvH * d, h])
  const v = await read(source, n.v, [kvH * d, h])
  const o = await read(source, n.o, [h, nH * d])
  const qNorm = await read(source, n.qNorm, [d])
  const kNorm = await read(source, n.kNorm, [d])
  const postNorm = await read(source, n.postNorm, [h])
  const gate = await read(source, n.gate, [m, h])
  const up = await read(source, n.up, [m, h])
  const down = await read(source, n.down, [h, m])
  const kvHeads = kvH / count
  const heads = nH / count
  const inter = m / count
  const shards: LayerShardData[] = []
  for (let s = 0; s < count; s++) {
    shards.push({
      layer,
      shard: s,
      count,
      heads,
      kvHeads,
      inter,
      inputNorm,
      postNorm,
      qNorm,
      kNorm,
      qkv: stackRows(h, [[q, s * heads * d, heads * d], [k, s * kvHeads * d, kvHeads * d], [v, s * kvHeads * d, kvHeads * d]]),
      o: columns(o, h, nH * d, s * heads * d, heads * d),
      gateUp: stackRows(h, [[gate, s * inter, inter], [up, s * inter, inter]]),
      down: columns(down, h, m, s * inter, inter)
    })
  }
  return shards
}
