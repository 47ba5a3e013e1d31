/**
 * A training stage: decoder layers [start, end) of a Qwen3 model, optionally
 * the embedding (frozen: tfjs-wasm has no gradient for gather) and the final
 * norm + head, with the stage's trainable tensors (LoRA adapters on a frozen
 * base, or the full weights) and their gradients and optimizer moments.
 * The layer math is the inference one (model/qwen3/layer-math.ts) with
 * training's linears. The one-process trainer holds one stage of the whole
 * model; a pipeline holds one per node.
 *
 * Work units, each one layer x one micro-batch (a sequence [T]):
 * - forwardLayer(l, x): the layer's output, no tape (the caller keeps x);
 * - backwardLayer(l, x, dy): recomputes the layer from its input x under
 * tf.grads (activation checkpointing: a stage keeps only each layer's
 * input per micro-batch), adds the trainable tensors' gradients times
 * `scale` to their accumulators, returns dx;
 * - headLoss(h, ids, scale?): the mean next-token cross-entropy of the
 * sequence; with a scale, also the head's gradients and dh.
 *
 * LoRA: for a projection W [out, in] (stored here transposed, [in, out], as
 * inference does) y = x W + (alpha / r) (x A) B with A [in, r] (seeded
 * uniform +-1/sqrt(in), one Prng(seed) stream over layers 0.. in order, so
 * a stage of layers [s, e) draws exactly what a whole-model stage draws
 * there) and B [r, out] (zeros), so training starts at the base model exactly. The candidate weight is W^T + (alpha / r) (A B)^T.
 */
import { Prng } from '../../model/prng.ts'
import { attentionInputs, attentionOutput, headLogits, mlpOutput } from '../../model/qwen3/layer-math.ts'
import { causalMask } from '../../model/qwen3/ops.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorNames } from '../../model/qwen3/plan.ts'
import { RopeTable } from '../../model/qwen3/rope.ts'
import { tf } from '../../model/qwen3/tf.ts'
import { TrainError, TrainErrorCode } from './errors.ts'
import { frozenMatMul, trainMatMul } from './grad-ops.ts'
import { TrainParam } from './param.ts'
import type { Qwen3Config } from '../../model/qwen3/config.ts'
import type { LayerDims, LayerLinears, LayerNorms } from '../../model/qwen3/layer-math.ts'
import type { Tensor, Tensor1D, Tensor2D } from '../../model/qwen3/tf.ts'

export const PROJECTIONS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const
export type Projection = typeof PROJECTIONS[number]

export interface TrainMode {
  /** train every weight but the embedding (small models) instead of LoRA adapters */
  full: boolean
  /** LoRA rank r */
  rank: number
  /** LoRA alpha (scale alpha / r) */
  alpha: number
  /** the projections that get adapters */
  targets: readonly Projection[]
}

export interface TrainStageInit {
  config: Qwen3Config
  /** the base weights by checkpoint name, f32, stored layouts ([out, in] for linears) */
  weights: ReadonlyMap<string, Float32Array>
  start: number
  end: number
  embedding: boolean
  head: boolean
  mode: TrainMode
  /** seed of the adapters' initialisation */
  seed: number
}

/** One projection of a layer in the [in, out] layout. */
interface Linear {
  name: string
  inp: number
  out: number
  /** frozen: W and W^T; trainable (full): the parameter */
  w?: Tensor2D
  wT?: Tensor2D
  param?: TrainParam
  lora?: { a: TrainParam, b: TrainParam, scale: number }
}

interface StageLayer {
  index: number
  norms: Record<keyof LayerNorms, { tensor?: Tensor1D, param?: TrainParam }>
  proj: Record<Projection, Linear>
  /** lora mode: fused frozen q|k|v and gate|up ([in, out]) and their transposes */
  qkv?: [Tensor2D, Tensor2D]
  gateUp?: [Tensor2D, Tensor2D]
}

/** [rows, cols] row-major -> its transpose. */
function transpose (a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length)
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      t[j * rows + i] = a[i * cols + j]
    }
  }
  return t
}

export class TrainStage {
  readonly config: Qwen3Config
  readonly start: number
  readonly end: number
  readonly mode: TrainMode
  /** every trainable tensor of the stage, in a fixed order (layers ascending, then the head) */
  readonly params: TrainParam[]
  private readonly layers: StageLayer[]
  private readonly embedTokens: Tensor2D | null
  private readonly finalNorm: { tensor?: Tensor1D, param?: TrainParam } | null
  private readonly lmHead: Linear | null
  private readonly rope: RopeTable
  private readonly dims: LayerDims
  private readonly base: ReadonlyMap<string, Float32Array>
  private readonly frozen: Tensor[]
  /** set during a forward unit given a ProjectionCache / a backward unit replaying it */
  private record: Map<object, Tensor2D> | null
  private replay: Map<object, Tensor2D> | null

  constructor (init: TrainStageInit) {
    const { config, weights, mode } = init
    if (!mode.full && (!Number.isSafeInteger(mode.rank) || mode.rank < 1)) {
      throw new TrainError(TrainErrorCode.OPTION, `LoRA rank must be a positive integer, got ${mode.rank}`)
    }
    if (init.start < 0 || init.end > config.numLayers || init.end < init.start) {
      throw new TrainError(TrainErrorCode.OPTION, `layers [${init.start}, ${init.end}) are not inside [0, ${config.numLayers})`)
    }
    this.config = config
    this.start = init.start
    this.end = init.end
    this.mode = mode
    this.base = weights
    this.params = []
    this.frozen = []
    this.record = null
    this.replay = null
    this.layers = []
    this.rope = new RopeTable(config.headDim, config.ropeTheta, config.maxPositionEmbeddings)
    this.dims = { heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, eps: config.rmsNormEps }
    const rng = new Prng(init.seed)
    const get = (name: string): Float32Array => {
      const w = weights.get(name)
      if (w == null) {
        throw new TrainError(TrainErrorCode.WEIGHTS, `tensor ${name} is missing from the base weights`)
      }
      return w
    }
    const keep = <T extends Tensor>(t: T): T => {
      this.frozen.push(t)
      return t
    }
    const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim: d, vocabSize: v } = config
    const shapes: Record<Projection, [number, number]> = {
      q: [numHeads * d, h], k: [numKvHeads * d, h], v: [numKvHeads * d, h], o: [h, numHeads * d], gate: [inter, h], up: [inter, h], down: [h, inter]
    }
    const scale = mode.alpha / mode.rank
    if (!mode.full) {
      // the adapters of layers [0, start) take their draws first, so a stage of any range
      // starts with exactly the adapters a whole-model stage of the same seed has there
      const perLayer = PROJECTIONS.filter(p => mode.targets.includes(p)).reduce((n, p) => n + shapes[p][1] * mode.rank, 0)
      for (let n = init.start * perLayer; n > 0; n--) {
        rng.next()
      }
    }
    for (let i = init.start; i < init.end; i++) {
      const names = layerTensorNames(i)
      const norm = (name: string): { tensor?: Tensor1D, param?: TrainParam } => {
        if (mode.full) {
          const p = new TrainParam(name, [get(name).length], Float32Array.from(get(name)), false)
          this.params.push(p)
          return { param: p }
        }
        return { tensor: keep(tf.tensor1d(get(name))) }
      }
      const norms = { inputNorm: norm(names.inputNorm), postNorm: norm(names.postNorm), qNorm: norm(names.qNorm), kNorm: norm(names.kNorm) }
      const proj = {} as Record<Projection, Linear>
      for (const p of PROJECTIONS) {
        const [out, inp] = shapes[p]
        const name = names[p]
        const lin: Linear = { name, inp, out }
        if (mode.full) {
          lin.param = new TrainParam(name, [inp, out], transpose(get(name), out, inp), true)
          this.params.push(lin.param)
        } else if (mode.targets.includes(p)) {
          const bound = 1 / Math.sqrt(inp)
          const a = new TrainParam(`${name}.lora_a`, [inp, mode.rank], Float32Array.from({ length: inp * mode.rank }, () => (2 * rng.next() - 1) * bound), true)
          const b = new TrainParam(`${name}.lora_b`, [mode.rank, out], new Float32Array(mode.rank * out), true)
          this.params.push(a, b)
          lin.lora = { a, b, scale }
        }
        proj[p] = lin
      }
      const layer: StageLayer = { index: i, norms, proj }
      if (!mode.full) {
        const fused = (parts: Projection[]): [Tensor2D, Tensor2D] => {
          const rows = parts.reduce((n, p) => n + shapes[p][0], 0)
          const inp = shapes[parts[0]][1]
          const data = new Float32Array(rows * inp)
          let o = 0
          for (const p of parts) {
            data.set(get(names[p]), o)
            o += get(names[p]).length
          }
          const wT = keep(tf.tensor2d(data, [rows, inp]))
          return [keep(tf.transpose(wT)), wT]
        }
        layer.qkv = fused(['q', 'k', 'v'])
        layer.gateUp = fused(['gate', 'up'])
        for (const p of ['o', 'down'] as const) {
          const [out, inp] = shapes[p]
          proj[p].wT = keep(tf.tensor2d(get(names[p]), [out, inp]))
          proj[p].w = keep(tf.transpose(proj[p].wT as Tensor2D))
        }
      }
      this.layers.push(layer)
    }
    this.embedTokens = init.embedding ? keep(tf.tensor2d(get(EMBED_TOKENS), [v, h])) : null
    this.finalNorm = null
    this.lmHead = null
    if (init.head) {
      const headName = config.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD
      if (mode.full) {
        const fn = new TrainParam(FINAL_NORM, [h], Float32Array.from(get(FINAL_NORM)), false)
        this.params.push(fn)
        this.finalNorm = { param: fn }
        if (config.tieWordEmbeddings) {
          // the head is the (frozen) embedding
          const wT = keep(tf.tensor2d(get(headName), [v, h]))
          this.lmHead = { name: headName, inp: h, out: v, wT, w: keep(tf.transpose(wT)) }
        } else {
          const p = new TrainParam(LM_HEAD, [h, v], transpose(get(LM_HEAD), v, h), true)
          this.params.push(p)
          this.lmHead = { name: LM_HEAD, inp: h, out: v, param: p }
        }
      } else {
        this.finalNorm = { tensor: keep(tf.tensor1d(get(FINAL_NORM))) }
        const wT = keep(tf.tensor2d(get(headName), [v, h]))
        this.lmHead = { name: headName, inp: h, out: v, wT, w: keep(tf.transpose(wT)) }
      }
    }
  }

  get hasEmbedding (): boolean {
    return this.embedTokens != null
  }

  get hasHead (): boolean {
    return this.lmHead != null
  }

  /** Token ids -> hidden states [T, hidden] (the frozen embedding). */
  embed (ids: ArrayLike<number>): Tensor2D {
    const table = this.embedTokens
    if (table == null) {
      throw new TrainError(TrainErrorCode.OPTION, 'this stage does not hold the embedding')
    }
    const arr = Int32Array.from(ids)
    for (const id of arr) {
      if (id < 0 || id >= this.config.vocabSize) {
        throw new TrainError(TrainErrorCode.DATA, `token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`)
      }
    }
    return tf.tidy(() => tf.gather(table, tf.tensor1d(arr, 'int32')))
  }

  private layerAt (l: number): StageLayer {
    const layer = this.layers[l - this.start]
    if (layer == null) {
      throw new TrainError(TrainErrorCode.OPTION, `layer ${l} is not in this stage's [${this.start}, ${this.end})`)
    }
    return layer
  }

  /**
   * The base product x W of a linear (or a fused group): recorded by a
   * forward unit into `projections`, replayed by the backward unit of the
   * same layer and micro-batch (its inputs and W are bit-identical then:
   * the weights change only in the optimizer unit), so the recomputation
   * skips the big matMuls and keeps their gradients.
   */
  private baseProduct (key: object, x: Tensor2D, run: (cached?: Tensor2D) => Tensor2D): Tensor2D {
    const cached = this.replay?.get(key)
    const y = run(cached)
    if (this.record != null) {
      this.record.set(key, tf.keep(tf.clone(y)))
    }
    return y
  }

  /** y = x W (+ the adapter) for one projection. */
  private project (lin: Linear, x: Tensor2D): Tensor2D {
    const base = this.baseProduct(lin, x, cached => lin.param != null ? trainMatMul(x, lin.param.tensor as Tensor2D, cached) : frozenMatMul(x, lin.w as Tensor2D, lin.wT, cached))
    return lin.lora == null ? base : tf.add(base, TrainStage.adapter(lin, x)) as Tensor2D
  }

  /** (alpha / r) (x A) B */
  private static adapter (lin: Linear, x: Tensor2D): Tensor2D {
    const { a, b, scale } = lin.lora as NonNullable<Linear['lora']>
    return tf.mul(trainMatMul(trainMatMul(x, a.tensor as Tensor2D), b.tensor as Tensor2D), scale) as Tensor2D
  }

  /** A fused group (q|k|v or gate|up): the frozen fused product plus the adapters' outputs side by side. */
  private fused (w: [Tensor2D, Tensor2D], parts: Linear[], x: Tensor2D): Tensor2D {
    const base = this.baseProduct(w, x, cached => frozenMatMul(x, w[0], w[1], cached))
    if (parts.every(p => p.lora == null)) {
      return base
    }
    const t = x.shape[0]
    return tf.add(base, tf.concat(parts.map(p => p.lora == null ? tf.zeros([t, p.out]) : TrainStage.adapter(p, x)), 1)) as Tensor2D
  }

  private layerMath (layer: StageLayer): { norms: LayerNorms, lin: LayerLinears } {
    const n = layer.norms
    const norm = (x: { tensor?: Tensor1D, param?: TrainParam }): Tensor1D => (x.param?.tensor as Tensor1D | undefined) ?? x.tensor as Tensor1D
    const norms: LayerNorms = { inputNorm: norm(n.inputNorm), postNorm: norm(n.postNorm), qNorm: norm(n.qNorm), kNorm: norm(n.kNorm) }
    const p = layer.proj
    const lin: LayerLinears = this.mode.full
      ? {
          qkv: x => tf.concat([this.project(p.q, x), this.project(p.k, x), this.project(p.v, x)], 1),
          o: x => this.project(p.o, x),
          gateUp: x => tf.concat([this.project(p.gate, x), this.project(p.up, x)], 1),
          down: x => this.project(p.down, x)
        }
      : {
          qkv: x => this.fused(layer.qkv as [Tensor2D, Tensor2D], [p.q, p.k, p.v], x),
          o: x => this.project(p.o, x),
          gateUp: x => this.fused(layer.gateUp as [Tensor2D, Tensor2D], [p.gate, p.up], x),
          down: x => this.project(p.down, x)
        }
    return { norms, lin }
  }

  /** The trainable tensors of decoder layer l. */
  layerParams (l: number): TrainParam[] {
    const layer = this.layerAt(l)
    const out: TrainParam[] = []
    for (const n of Object.values(layer.norms)) {
      if (n.param != null) {
        out.push(n.param)
      }
    }
    for (const p of PROJECTIONS) {
      const lin = layer.proj[p]
      if (lin.param != null) {
        out.push(lin.param)
      }
      if (lin.lora != null) {
        out.push(lin.lora.a, lin.lora.b)
      }
    }
    return out
  }

  /** The trainable tensors of the head (final norm, lm_head under full). */
  headParams (): TrainParam[] {
    const out: TrainParam[] = []
    if (this.finalNorm?.param != null) {
      out.push(this.finalNorm.param)
    }
    if (this.lmHead?.param != null) {
      out.push(this.lmHead.param)
    }
    return out
  }

  /** The decoder layer's math on a whole sequence x [T, hidden] at positions 0..T-1 (causal). */
  private layerForward (layer: StageLayer, x: Tensor2D): Tensor2D {
    const t = x.shape[0]
    const { norms, lin } = this.layerMath(layer)
    const { cos, sin } = this.rope.slice(0, t)
    const { qT, keys, valuesT } = attentionInputs(x, norms, lin, this.dims, cos, sin)
    const mask = t > 1 ? causalMask(t, t) : null
    const x2 = tf.add(x, attentionOutput(qT, keys, valuesT, mask, lin, this.dims, trainMatMul)) as Tensor2D
    return tf.add(x2, mlpOutput(x2, norms, lin, this.dims.eps)) as Tensor2D
  }

  /**
   * Work unit: layer l forward on x [T, hidden]; a new tensor, x stays the
   * caller's. With `cache`, the layer's linear products are kept there for
   * backwardLayer (memory: the [T, out] outputs of every projection).
   */
  forwardLayer (l: number, x: Tensor2D, cache?: ProjectionCache): Tensor2D {
    const layer = this.layerAt(l)
    this.record = cache?.layer(l) ?? null
    try {
      return tf.tidy(() => this.layerForward(layer, x))
    } finally {
      this.record = null
    }
  }

  /**
   * Work unit: layer l backward. Recomputes the layer on its input x under
   * tf.grads (replaying the products forwardLayer kept in `cache`, then
   * freeing them), adds `scale` x the gradients of its trainable tensors to
   * their accumulators, returns dL/dx (a new tensor).
   */
  backwardLayer (l: number, x: Tensor2D, dy: Tensor2D, scale: number, cache?: ProjectionCache): Tensor2D {
    const layer = this.layerAt(l)
    const params = this.layerParams(l)
    this.replay = cache?.layer(l) ?? null
    try {
      return this.backward(params, x, dy, scale, (xi) => this.layerForward(layer, xi))
    } finally {
      this.replay = null
      cache?.drop(l)
    }
  }

  private backward (params: TrainParam[], x: Tensor2D, dy: Tensor | null, scale: number, f: (x: Tensor2D) => Tensor): Tensor2D {
    const tensors = params.map(p => p.tensor)
    const [dx, ...grads] = tf.tidy(() => tf.grads((xi: Tensor, ..._ps: Tensor[]) => f(xi as Tensor2D))([x, ...tensors], dy ?? undefined))
    try {
      for (let i = 0; i < params.length; i++) {
        params[i].accumulate(grads[i].dataSync() as Float32Array, scale)
      }
    } finally {
      tf.dispose(grads)
    }
    return dx as Tensor2D
  }

  /** Logits [T, vocab] of the last hidden states. */
  private logits (h: Tensor2D): Tensor2D {
    const norm = (this.finalNorm?.param?.tensor as Tensor1D | undefined) ?? this.finalNorm?.tensor as Tensor1D
    const head = this.lmHead as Linear
    return headLogits(h, norm, x => this.project(head, x), this.config.rmsNormEps)
  }

  /** Mean next-token cross-entropy of the sequence: logits of rows 0..T-2 against ids[1..T-1] (one-hot weights; a scalar). */
  private lossOf (h: Tensor2D, targets: Tensor2D, count: number): Tensor {
    const logp = tf.logSoftmax(this.logits(h))
    return tf.div(tf.neg(tf.sum(tf.mul(logp, targets))), count)
  }

  /** One-hot targets [T, vocab]: row p = ids[p + 1] for p < T - 1, the last row zero. */
  private targets (ids: ArrayLike<number>): Tensor2D {
    const t = ids.length
    const v = this.config.vocabSize
    const m = new Float32Array(t * v)
    for (let p = 0; p + 1 < t; p++) {
      const id = ids[p + 1]
      if (!Number.isInteger(id) || id < 0 || id >= v) {
        throw new TrainError(TrainErrorCode.DATA, `token id ${id} is outside the vocabulary [0, ${v})`)
      }
      m[p * v + id] = 1
    }
    return tf.tensor2d(m, [t, v])
  }

  /**
   * Work unit: the head on the last hidden states h [T, hidden] of the
   * sequence `ids`: returns the loss; with `scale`, also adds the head's
   * gradients (x scale) and returns dL/dh.
   */
  headLoss (h: Tensor2D, ids: ArrayLike<number>, scale: number): { loss: number, dh: Tensor2D }
  headLoss (h: Tensor2D, ids: ArrayLike<number>): { loss: number }
  headLoss (h: Tensor2D, ids: ArrayLike<number>, scale?: number): { loss: number, dh?: Tensor2D } {
    if (this.lmHead == null) {
      throw new TrainError(TrainErrorCode.OPTION, 'this stage does not hold the head')
    }
    if (ids.length < 2 || ids.length !== h.shape[0]) {
      throw new TrainError(TrainErrorCode.DATA, `a sequence needs at least 2 tokens and one hidden state each (${ids.length} ids, ${h.shape[0]} states)`)
    }
    const targets = this.targets(ids)
    try {
      if (scale == null) {
        const l = tf.tidy(() => this.lossOf(h, targets, ids.length - 1))
        const loss = l.dataSync()[0]
        l.dispose()
        return { loss }
      }
      let loss = 0
      const dh = this.backward(this.headParams(), h, null, scale, (hi) => {
        const l = this.lossOf(hi, targets, ids.length - 1)
        loss = l.dataSync()[0]
        return l
      })
      return { loss, dh }
    } finally {
      targets.dispose()
    }
  }

  /**
   * The candidate weights of the trained tensors by checkpoint name in the
   * stored layout ([out, in] for linears): LoRA: W + (alpha / r) (A B)^T
   * per adapted projection (float64 sums rounded once); full: the trained
   * values. Tensors training did not touch are left out.
   */
  candidate (): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>()
    // trainable linears are held [in, out]: back to the stored [out, in]
    const values = (p: TrainParam, inp: number, outDim: number): Float32Array => transpose(p.values, inp, outDim)
    for (const layer of this.layers) {
      for (const n of Object.values(layer.norms)) {
        if (n.param != null) {
          out.set(n.param.name, Float32Array.from(n.param.values))
        }
      }
      for (const p of PROJECTIONS) {
        const lin = layer.proj[p]
        if (lin.param != null) {
          out.set(lin.name, values(lin.param, lin.inp, lin.out))
        } else if (lin.lora != null) {
          out.set(lin.name, this.merged(lin))
        }
      }
    }
    if (this.finalNorm?.param != null) {
      out.set(FINAL_NORM, Float32Array.from(this.finalNorm.param.values))
    }
    if (this.lmHead?.param != null) {
      out.set(LM_HEAD, values(this.lmHead.param, this.lmHead.inp, this.lmHead.out))
    }
    return out
  }

  /** W [out, in] + scale (A B)^T. */
  private merged (lin: Linear): Float32Array {
    const { a, b, scale } = lin.lora as NonNullable<Linear['lora']>
    const r = this.mode.rank
    const w = this.base.get(lin.name) as Float32Array
    const out = new Float32Array(w.length)
    for (let o = 0; o < lin.out; o++) {
      for (let i = 0; i < lin.inp; i++) {
        let s = 0
        for (let k = 0; k < r; k++) {
          s += a.values[i * r + k] * b.values[k * lin.out + o]
        }
        out[o * lin.inp + i] = w[o * lin.inp + i] + scale * s
      }
    }
    return out
  }

  dispose (): void {
    tf.dispose(this.frozen)
    this.frozen.length = 0
    for (const p of this.params) {
      p.dispose()
    }
    this.rope.dispose()
  }
}

/** The linear products of one micro-batch's forward units, per layer, for its backward units. */
export class ProjectionCache {
  private readonly layers = new Map<number, Map<object, Tensor2D>>()

  layer (l: number): Map<object, Tensor2D> {
    let m = this.layers.get(l)
    if (m == null) {
      m = new Map()
      this.layers.set(l, m)
    }
    return m
  }

  drop (l: number): void {
    const m = this.layers.get(l)
    if (m != null) {
      tf.dispose([...m.values()])
      this.layers.delete(l)
    }
  }

  dispose (): void {
    for (const l of [...this.layers.keys()]) {
      this.drop(l)
    }
  }
}
