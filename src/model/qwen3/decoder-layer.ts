import { runningWebGpuAdapter } from '../webgpu.ts'
import { kvLength } from './kv-cache.ts'
import { attentionInputs, attentionOutput, mlpOutput } from './layer-math.ts'
import { readLayerShards } from './layer-shard.ts'
import { causalMask } from './ops.ts'
import { tf } from './tf.ts'
import type { WeightSource } from '../weight-source.ts'
import type { Qwen3Config } from './config.ts'
import type { LayerKv } from './kv-cache.ts'
import type { LayerDims, LayerLinears } from './layer-math.ts'
import type { LayerShardData } from './layer-shard.ts'
import type { RopeTable } from './rope.ts'
import type { Tensor, Tensor1D, Tensor2D } from './tf.ts'

interface LayerWeights {
  inputNorm: Tensor1D
  postNorm: Tensor1D
  qNorm: Tensor1D
  kNorm: Tensor1D
  /** linear weights transposed to [in, out] in column blocks; q/k/v and gate/up fused along out */
  qkv: Tensor2D[]
  o: Tensor2D[]
  gateUp: Tensor2D[]
  down: Tensor2D[]
}

/**
 * Bytes per column block of a linear weight. XNNPACK's GEMM (no thread pool)
 * streams the whole packed weight once per few input rows, so a multi-row
 * matMul (prefill) against one 100 MB weight runs from DRAM; in blocks of
 * ~16 MB it stays in cache: 21 -> 33 GFLOP/s at 512 rows, measured, with
 * decode (1 row) unchanged.
 */
export const LINEAR_BLOCK_BYTES = 16 * 1024 * 1024

/**
 * A linear weight stored [out, in], transposed once to [in, out] so every
 * step is a plain x @ W (XNNPACK's fully-connected path on wasm), cut into
 * column blocks of at most `blockBytes` (multiples of 128 columns where they fit).
 */
export function linear (data: Float32Array, out: number, inp: number, blockBytes: number): Tensor2D[] {
  const fit = Math.max(1, Math.floor(blockBytes / (inp * 4)))
  const cols = fit >= 128 ? fit - fit % 128 : fit
  const blocks: Tensor2D[] = []
  try {
    for (let c0 = 0; c0 < out; c0 += cols) {
      const n = Math.min(cols, out - c0)
      blocks.push(tf.tidy(() => tf.transpose(tf.tensor2d(data.subarray(c0 * inp, (c0 + n) * inp), [n, inp]))))
    }
  } catch (err) {
    tf.dispose(blocks)
    throw err
  }
  return blocks
}

/** x @ W for W in column blocks (linear()). */
export function apply (x: Tensor2D, w: Tensor2D[]): Tensor2D {
  return w.length === 1 ? tf.matMul(x, w[0]) : tf.concat(w.map(b => tf.matMul(x, b)), 1)
}

/**
 * LINEAR_BLOCK_BYTES, or less where the running webgpu device binds less in
 * one storage buffer (each column block is one tfjs tensor, one buffer).
 */
export function linearBlockBytes (): number {
  const binding = runningWebGpuAdapter()?.limits.maxStorageBufferBindingSize
  return binding != null && binding > 0 && tf.getBackend() === 'webgpu' ? Math.min(LINEAR_BLOCK_BYTES, binding) : LINEAR_BLOCK_BYTES
}

/**
 * One Qwen3 decoder layer, or one tensor-parallel shard of it (a subset of
 * the heads and of the MLP columns, see LayerShardData): attention (GQA,
 * q/k norm, RoPE) and SiLU-gated MLP, pre-norm residuals.
 */
export class DecoderLayer {
  readonly index: number
  /** the shard's query heads, kv heads and intermediate columns */
  readonly heads: number
  readonly kvHeads: number
  readonly inter: number
  private readonly config: Qwen3Config
  private readonly w: LayerWeights
  /** the projections of layer-math.ts: x @ W over the column blocks */
  private readonly lin: LayerLinears
  private readonly dims: LayerDims

  private constructor (config: Qwen3Config, data: LayerShardData, w: LayerWeights) {
    this.index = data.layer
    this.heads = data.heads
    this.kvHeads = data.kvHeads
    this.inter = data.inter
    this.config = config
    this.w = w
    this.lin = {
      qkv: x => apply(x, w.qkv),
      o: x => apply(x, w.o),
      gateUp: x => apply(x, w.gateUp),
      down: x => apply(x, w.down)
    }
    this.dims = { heads: data.heads, kvHeads: data.kvHeads, headDim: config.headDim, eps: config.rmsNormEps }
  }

  /** The whole layer `index`, read from `source`. */
  static async load (config: Qwen3Config, source: WeightSource, index: number): Promise<DecoderLayer> {
    const [data] = await readLayerShards(config, source, index, 1)
    return DecoderLayer.fromShard(config, data, linearBlockBytes())
  }

  /** Builds the layer (or shard) from its float32 weights; linear weights in column blocks of at most `blockBytes`. */
  static fromShard (config: Qwen3Config, data: LayerShardData, blockBytes = LINEAR_BLOCK_BYTES): DecoderLayer {
    const { hiddenSize: h, headDim: d } = config
    const loaded: Tensor[] = []
    const track = <T extends Tensor | Tensor[]>(t: T): T => {
      loaded.push(...(Array.isArray(t) ? t : [t]))
      return t
    }
    try {
      const w: LayerWeights = {
        inputNorm: track(tf.tensor1d(data.inputNorm)),
        postNorm: track(tf.tensor1d(data.postNorm)),
        qNorm: track(tf.tensor1d(data.qNorm)),
        kNorm: track(tf.tensor1d(data.kNorm)),
        qkv: track(linear(data.qkv, (data.heads + 2 * data.kvHeads) * d, h, blockBytes)),
        o: track(linear(data.o, h, data.heads * d, blockBytes)),
        gateUp: track(linear(data.gateUp, 2 * data.inter, h, blockBytes)),
        down: track(linear(data.down, h, data.inter, blockBytes))
      }
      return new DecoderLayer(config, data, w)
    } catch (err) {
      for (const t of loaded) {
        t.dispose()
      }
      throw err
    }
  }

  /**
   * The whole layer on x [T, hidden] at positions [kv length, kv length + T),
   * appending this step's keys and values to `kv`. Only for a layer holding
   * every head and column (load()). Returns a new tensor; x stays the caller's.
   */
  forward (x: Tensor2D, kv: LayerKv, rope: RopeTable): Tensor2D {
    const a = this.attention(x, kv, rope)
    const x2 = tf.add(x, a) as Tensor2D
    a.dispose()
    const m = this.mlp(x2)
    const out = tf.add(x2, m) as Tensor2D
    x2.dispose()
    m.dispose()
    return out
  }

  /**
   * This shard's share of o_proj(attention(input_norm(x))), [T, hidden],
   * without the residual; appends the shard's keys and values to `kv`.
   */
  attention (x: Tensor2D, kv: LayerKv, rope: RopeTable): Tensor2D {
    const t = x.shape[0]
    const past = kvLength(kv)
    const [out, keys, valuesT] = tf.tidy(() => {
      const { cos, sin } = rope.slice(past, t)
      const fresh = attentionInputs(x, this.w, this.lin, this.dims, cos, sin)
      const keys = kv.k == null ? fresh.keys : fresh.keys.map((kn, i) => tf.concat([(kv.k as Tensor2D[])[i], kn], 0))
      const valuesT = kv.vT == null ? fresh.valuesT : fresh.valuesT.map((vn, i) => tf.concat([(kv.vT as Tensor2D[])[i], vn], 1))
      const mask = t > 1 ? causalMask(t, past + t) : null
      return [attentionOutput(fresh.qT, keys, valuesT, mask, this.lin, this.dims), keys, valuesT] as [Tensor2D, Tensor2D[], Tensor2D[]]
    })
    // concat made new tensors: the old cache goes
    tf.dispose([...(kv.k ?? []), ...(kv.vT ?? [])])
    kv.k = keys
    kv.vT = valuesT
    return out
  }

  /** This shard's share of down(silu(gate(h)) * up(h)) with h = post_norm(x2), [T, hidden], without the residual. */
  mlp (x2: Tensor2D): Tensor2D {
    return tf.tidy(() => mlpOutput(x2, this.w, this.lin, this.config.rmsNormEps))
  }

  dispose (): void {
    tf.dispose(Object.values(this.w).flat())
  }
}
