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
 * - forwardLayer(l, x, cache?): the layer's output, no tape (the caller
 * keeps x); with a cache, the activations the backward needs are kept
 * there (ProjectionCache: the q|k|v and gate|up products, o_proj's input
 * and the attention residual, see activationBytes());
 * - backwardLayer(l, x, dy, scale, cache): the hand-written VJP of the
 * layer (layer-vjp.ts) over those saved activations, recomputing only the
 * cheap element-wise pieces (norms, RoPE, the attention probabilities per
 * kv head, the SwiGLU): frozen weights get dx = dy W^T only; adds the
 * trainable tensors' gradients times `scale` to their accumulators,
 * returns dx. Without a cache it recomputes the layer under tf.grads
 * (backwardLayerTape, the reference the tests check the VJP against);
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
import { apply, linear, linearBlockBytes } from '../../model/qwen3/decoder-layer.ts'
import { attentionInputs, attentionOutput, headLogits, mlpOutput, swiglu } from '../../model/qwen3/layer-math.ts'
import { applyRope, causalMask, rmsNorm } from '../../model/qwen3/ops.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorNames } from '../../model/qwen3/plan.ts'
import { RopeTable } from '../../model/qwen3/rope.ts'
import { tf } from '../../model/qwen3/tf.ts'
import { TrainError, TrainErrorCode } from './errors.ts'
import { frozenMatMul, trainMatMul } from './grad-ops.ts'
import { attentionVjp, rmsNormVjp, ropeVjp, swigluVjp } from './layer-vjp.ts'
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
  /** the frozen head: W and W^T */
  w?: Tensor2D
  wT?: Tensor2D
  /** trainable (full): the parameter */
  param?: TrainParam
  lora?: { a: TrainParam, b: TrainParam, scale: number }
}

/** The linear groups of a layer (layer-math.ts LayerLinears): q|k|v and gate|up fused along out. */
type Group = keyof LayerLinears

/** A frozen group's W [in, out] and W^T [out, in], each in column blocks (decoder-layer.ts linear()). */
interface FrozenGroup {
  w: Tensor2D[]
  wT: Tensor2D[]
}

interface StageLayer {
  index: number
  norms: Record<keyof LayerNorms, { tensor?: Tensor1D, param?: TrainParam }>
  proj: Record<Projection, Linear>
  /** the projections of each group, in the fused order */
  groups: Record<Group, Linear[]>
  /** LoRA mode: the frozen base weights per group */
  frozen?: Record<Group, FrozenGroup>
}

/** What a forward unit keeps of one layer for its backward unit (see activationBytes()). */
interface SavedLayer {
  /** the fused q|k|v product [T, (heads + 2 kvHeads) d] */
  qkv?: Tensor2D
  /** o_proj's input, the attention context [T, heads d] */
  ctx?: Tensor2D
  /** the residual after attention [T, hidden] */
  x2?: Tensor2D
  /** the fused gate|up product [T, 2 intermediate] */
  gateUp?: Tensor2D
}

const GROUPS: Record<Group, Projection[]> = { qkv: ['q', 'k', 'v'], o: ['o'], gateUp: ['gate', 'up'], down: ['down'] }

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
      const groups = {} as Record<Group, Linear[]>
      for (const [g, parts] of Object.entries(GROUPS) as Array<[Group, Projection[]]>) {
        groups[g] = parts.map(p => proj[p])
      }
      const layer: StageLayer = { index: i, norms, proj, groups }
      if (!mode.full) {
        const blockBytes = linearBlockBytes()
        const frozenGroup = (parts: Projection[]): FrozenGroup => {
          const rows = parts.reduce((n, p) => n + shapes[p][0], 0)
          const inp = shapes[parts[0]][1]
          // stored [out, in] rows of the parts one after another: W^T of the fused group
          const data = new Float32Array(rows * inp)
          let o = 0
          for (const p of parts) {
            data.set(get(names[p]), o)
            o += get(names[p]).length
          }
          return {
            w: linear(data, rows, inp, blockBytes).map(keep),
            wT: linear(transpose(data, rows, inp), inp, rows, blockBytes).map(keep)
          }
        }
        layer.frozen = { qkv: frozenGroup(GROUPS.qkv), o: frozenGroup(GROUPS.o), gateUp: frozenGroup(GROUPS.gateUp), down: frozenGroup(GROUPS.down) }
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

  /** The head's y = x W (frozen or trainable; under tf.grads). */
  private project (lin: Linear, x: Tensor2D): Tensor2D {
    return lin.param != null ? trainMatMul(x, lin.param.tensor as Tensor2D) : frozenMatMul(x, [lin.w as Tensor2D], [lin.wT as Tensor2D])
  }

  private normTensors (layer: StageLayer): LayerNorms {
    const n = layer.norms
    const norm = (x: { tensor?: Tensor1D, param?: TrainParam }): Tensor1D => (x.param?.tensor as Tensor1D | undefined) ?? x.tensor as Tensor1D
    return { inputNorm: norm(n.inputNorm), postNorm: norm(n.postNorm), qNorm: norm(n.qNorm), kNorm: norm(n.kNorm) }
  }

  /**
   * The layer's linears for layer-math.ts: frozen W (LoRA mode, in column
   * blocks) plus (alpha / r) (x A) B per adapter, or the trainable W
   * (full). `taped`: under tf.grads (matMuls with a fast gradient);
   * otherwise plain matMuls (a forward unit, no tape).
   */
  private linears (layer: StageLayer, taped: boolean): LayerLinears {
    const mm = taped ? trainMatMul : (a: Tensor2D, b: Tensor2D): Tensor2D => tf.matMul(a, b)
    const adapter = (lin: Linear, x: Tensor2D): Tensor2D => {
      const { a, b, scale } = lin.lora as NonNullable<Linear['lora']>
      return tf.mul(mm(mm(x, a.tensor as Tensor2D), b.tensor as Tensor2D), scale) as Tensor2D
    }
    const group = (g: Group) => (x: Tensor2D): Tensor2D => {
      const parts = layer.groups[g]
      const frozen = layer.frozen?.[g]
      if (frozen == null) {
        const outs = parts.map(p => mm(x, (p.param as TrainParam).tensor as Tensor2D))
        return outs.length === 1 ? outs[0] : tf.concat(outs, 1)
      }
      const base = taped ? frozenMatMul(x, frozen.w, frozen.wT) : apply(x, frozen.w)
      if (parts.every(p => p.lora == null)) {
        return base
      }
      const t = x.shape[0]
      const side = parts.map(p => p.lora == null ? tf.zeros([t, p.out]) as Tensor2D : adapter(p, x))
      return tf.add(base, side.length === 1 ? side[0] : tf.concat(side, 1)) as Tensor2D
    }
    return { qkv: group('qkv'), o: group('o'), gateUp: group('gateUp'), down: group('down') }
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

  /**
   * The decoder layer's math (layer-math.ts) on a whole sequence x [T, hidden]
   * at positions 0..T-1 (causal). `save`: keep there what the VJP needs.
   */
  private layerForward (layer: StageLayer, x: Tensor2D, taped: boolean, save?: SavedLayer): Tensor2D {
    const t = x.shape[0]
    const norms = this.normTensors(layer)
    let lin = this.linears(layer, taped)
    if (save != null) {
      const keep = (y: Tensor2D): Tensor2D => tf.keep(tf.clone(y))
      const inner = lin
      lin = {
        qkv: h => { const y = inner.qkv(h); save.qkv = keep(y); return y },
        o: ctx => { save.ctx = keep(ctx); return inner.o(ctx) },
        gateUp: h2 => { const y = inner.gateUp(h2); save.gateUp = keep(y); return y },
        down: inner.down
      }
    }
    const { cos, sin } = this.rope.slice(0, t)
    const { qT, keys, valuesT } = attentionInputs(x, norms, lin, this.dims, cos, sin)
    const mask = t > 1 ? causalMask(t, t) : null
    const x2 = tf.add(x, attentionOutput(qT, keys, valuesT, mask, lin, this.dims, taped ? trainMatMul : undefined)) as Tensor2D
    if (save != null) {
      save.x2 = tf.keep(tf.clone(x2))
    }
    return tf.add(x2, mlpOutput(x2, norms, lin, this.dims.eps)) as Tensor2D
  }

  /**
   * Work unit: layer l forward on x [T, hidden], no tape; a new tensor, x
   * stays the caller's. With `cache`, the activations backwardLayer needs
   * are kept there (activationBytes()).
   */
  forwardLayer (l: number, x: Tensor2D, cache?: ProjectionCache): Tensor2D {
    const layer = this.layerAt(l)
    // a forward again over the same layer and micro-batch replaces what the last one kept
    cache?.drop(l)
    return tf.tidy(() => this.layerForward(layer, x, false, cache?.layer(l)))
  }

  /**
   * Bytes a ProjectionCache holds per micro-batch of `t` tokens for this
   * stage's layers between their forward and backward units (float32:
   * per layer and token the q|k|v and gate|up products, o_proj's input and
   * the attention residual). The layers' inputs, kept by the caller, are not counted.
   */
  activationBytes (t: number): number {
    const c = this.config
    const perToken = (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim + c.hiddenSize + 2 * c.intermediateSize
    return 4 * t * perToken * (this.end - this.start)
  }

  /**
   * Work unit: layer l backward. With the activations forwardLayer kept
   * in `cache` (then freed): the hand-written VJP (layerVjp); without, the
   * tape (backwardLayerTape). Adds `scale` x the gradients of its trainable
   * tensors to their accumulators, returns dL/dx (a new tensor).
   */
  backwardLayer (l: number, x: Tensor2D, dy: Tensor2D, scale: number, cache?: ProjectionCache): Tensor2D {
    const layer = this.layerAt(l)
    const saved = cache?.take(l)
    if (saved == null) {
      return this.backwardLayerTape(l, x, dy, scale)
    }
    try {
      const params = this.layerParams(l)
      const [dx, ...grads] = tf.tidy(() => {
        const g = new Map<TrainParam, Tensor>()
        const dx = this.layerVjp(layer, x, dy, saved, g)
        return [dx, ...params.map(p => {
          const t = g.get(p)
          if (t == null) {
            throw new TrainError(TrainErrorCode.OPTION, `the layer's VJP gave no gradient for ${p.name}`)
          }
          return t
        })]
      })
      this.accumulate(params, grads, scale)
      return dx as Tensor2D
    } finally {
      tf.dispose(Object.values(saved))
    }
  }

  /**
   * Work unit: layer l backward by recomputing it from its input x under
   * tf.grads (tfjs' autodiff of the shared layer math): the reference the
   * hand-written VJP is tested against, and the path without a cache.
   */
  backwardLayerTape (l: number, x: Tensor2D, dy: Tensor2D, scale: number): Tensor2D {
    const layer = this.layerAt(l)
    return this.backward(this.layerParams(l), x, dy, scale, (xi) => this.layerForward(layer, xi, true))
  }

  /**
   * dL/dx of one layer from dy = dL/d(output) and the saved activations;
   * the trainable tensors' gradients go into `grads`. Reverse order of
   * layerForward: MLP (down, SwiGLU, gate|up, post norm, residual), then
   * attention (o, the attention per kv head, RoPE and q/k norms, q|k|v,
   * input norm, residual). h, h2 and the SwiGLU output are recomputed with
   * the forward's own ops (ops.ts, layer-math.ts) from what was saved.
   */
  private layerVjp (layer: StageLayer, x: Tensor2D, dy: Tensor2D, saved: Required<SavedLayer>, grads: Map<TrainParam, Tensor>): Tensor2D {
    const { heads: nH, kvHeads: kvH, headDim: d, eps } = this.dims
    const t = x.shape[0]
    const norms = this.normTensors(layer)
    const trained = (n: { param?: TrainParam }): boolean => n.param != null
    const normGrad = (n: { param?: TrainParam }, dw: Tensor | null): void => {
      if (n.param != null && dw != null) {
        grads.set(n.param, dw)
      }
    }
    // MLP: out = x2 + down(swiglu(g, u)), [g, u] = gateUp(post_norm(x2))
    const [g, u] = tf.split(saved.gateUp, 2, 1) as [Tensor2D, Tensor2D]
    const dAct = this.linearVjp(layer, 'down', swiglu(g, u), dy, grads)
    const { dg, du } = swigluVjp(g, u, dAct)
    const dh2 = this.linearVjp(layer, 'gateUp', rmsNorm(saved.x2, norms.postNorm, eps), tf.concat([dg, du], 1), grads)
    const post = rmsNormVjp(saved.x2, norms.postNorm, eps, dh2, trained(layer.norms.postNorm))
    normGrad(layer.norms.postNorm, post.dw)
    const dx2 = tf.add(dy, post.dx) as Tensor2D
    // attention: x2 = x + o(ctx)
    const dctx = this.linearVjp(layer, 'o', saved.ctx, dx2, grads)
    const [qf, kf, vf] = tf.split(saved.qkv, [nH * d, kvH * d, kvH * d], 1)
    const q3 = tf.reshape(qf, [t, nH, d])
    const k3 = tf.reshape(kf, [t, kvH, d])
    const { cos, sin } = this.rope.slice(0, t)
    const q = applyRope(rmsNorm(q3, norms.qNorm, eps), cos, sin)
    const k = applyRope(rmsNorm(k3, norms.kNorm, eps), cos, sin)
    const att = attentionVjp(q, k, tf.reshape(vf, [t, kvH, d]), t > 1 ? causalMask(t, t) : null, dctx, this.dims)
    const qn = rmsNormVjp(q3, norms.qNorm, eps, ropeVjp(att.dq, cos, sin), trained(layer.norms.qNorm))
    const kn = rmsNormVjp(k3, norms.kNorm, eps, ropeVjp(att.dk, cos, sin), trained(layer.norms.kNorm))
    normGrad(layer.norms.qNorm, qn.dw)
    normGrad(layer.norms.kNorm, kn.dw)
    const dqkv = tf.concat([tf.reshape(qn.dx, [t, nH * d]), tf.reshape(kn.dx, [t, kvH * d]), tf.reshape(att.dv, [t, kvH * d])], 1) as Tensor2D
    const dh = this.linearVjp(layer, 'qkv', rmsNorm(x, norms.inputNorm, eps), dqkv, grads)
    const inp = rmsNormVjp(x, norms.inputNorm, eps, dh, trained(layer.norms.inputNorm))
    normGrad(layer.norms.inputNorm, inp.dw)
    return tf.add(dx2, inp.dx) as Tensor2D
  }

  /**
   * VJP of one linear group y = x W (+ adapters) given its input x and dy:
   * returns dx. Frozen W: dx = dy W^T over W^T's column blocks, no dW; an
   * adapter (z = x A, y += s z B): dB = s z^T dy, dz = s dy B^T, dA = (dz^T x)^T,
   * dx += dz A^T; a trainable W: dW = x^T dy, dx += dy W^T. Every product a
   * plain matMul over materialised transposes.
   */
  private linearVjp (layer: StageLayer, g: Group, x: Tensor2D, dy: Tensor2D, grads: Map<TrainParam, Tensor>): Tensor2D {
    const parts = layer.groups[g]
    const frozen = layer.frozen?.[g]
    const t = x.shape[0]
    const terms: Tensor2D[] = frozen != null ? [apply(dy, frozen.wT)] : []
    let xT: Tensor2D | null = null
    const xTransposed = (): Tensor2D => {
      xT ??= tf.transpose(x)
      return xT
    }
    let off = 0
    for (const p of parts) {
      const dyp = parts.length === 1 ? dy : tf.slice(dy, [0, off], [t, p.out])
      off += p.out
      if (p.param != null) {
        grads.set(p.param, tf.matMul(xTransposed(), dyp))
        terms.push(tf.matMul(dyp, p.param.transposed as Tensor2D))
      }
      if (p.lora != null) {
        const { a, b, scale } = p.lora
        const z = tf.matMul(x, a.tensor as Tensor2D)
        grads.set(b, tf.mul(tf.matMul(tf.transpose(z), dyp), scale))
        const dz = tf.mul(tf.matMul(dyp, tf.transpose(b.tensor as Tensor2D)), scale) as Tensor2D
        // dA = x^T dz as (dz^T x)^T: transposes of [r, *] instead of x's [T, in]
        grads.set(a, tf.transpose(tf.matMul(tf.transpose(dz), x)))
        terms.push(tf.matMul(dz, tf.transpose(a.tensor as Tensor2D)))
      }
    }
    return terms.length === 1 ? terms[0] : tf.addN(terms)
  }

  private backward (params: TrainParam[], x: Tensor2D, dy: Tensor | null, scale: number, f: (x: Tensor2D) => Tensor): Tensor2D {
    const tensors = params.map(p => p.tensor)
    const [dx, ...grads] = tf.tidy(() => tf.grads((xi: Tensor, ..._ps: Tensor[]) => f(xi as Tensor2D))([x, ...tensors], dy ?? undefined))
    this.accumulate(params, grads, scale)
    return dx as Tensor2D
  }

  /** Adds each gradient x scale to its parameter's accumulator, then frees the gradients. */
  private accumulate (params: TrainParam[], grads: Tensor[], scale: number): void {
    try {
      for (let i = 0; i < params.length; i++) {
        params[i].accumulate(grads[i].dataSync() as Float32Array, scale)
      }
    } finally {
      tf.dispose(grads)
    }
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

/**
 * What one micro-batch's forward units keep per layer for its backward
 * units (TrainStage.activationBytes() says how much); backwardLayer takes a
 * layer's share out and frees it, dispose() frees what is left (a
 * micro-batch abandoned between its units).
 */
export class ProjectionCache {
  private readonly layers = new Map<number, SavedLayer>()

  /** Layer l's record, made empty on first use (a forward unit fills it). */
  layer (l: number): SavedLayer {
    let m = this.layers.get(l)
    if (m == null) {
      m = {}
      this.layers.set(l, m)
    }
    return m
  }

  /** Layer l's complete record, removed from the cache (the caller frees it), or undefined. */
  take (l: number): Required<SavedLayer> | undefined {
    const m = this.layers.get(l)
    if (m == null || m.qkv == null || m.ctx == null || m.x2 == null || m.gateUp == null) {
      this.drop(l)
      return undefined
    }
    this.layers.delete(l)
    return m as Required<SavedLayer>
  }

  drop (l: number): void {
    const m = this.layers.get(l)
    if (m != null) {
      tf.dispose(Object.values(m))
      this.layers.delete(l)
    }
  }

  dispose (): void {
    for (const l of [...this.layers.keys()]) {
      this.drop(l)
    }
  }
}
