import type { Qwen3Config } from './config.ts'

export const UnitKind = {
  EMBEDDING: 'embedding',
  LAYER: 'layer',
  HEAD: 'head'
} as const

export type UnitKindValue = typeof UnitKind[keyof typeof UnitKind]

/** One unit of the model's weights (one layer block on chain B). */
export interface UnitPlan {
  /** 0 = embedding, 1..L = decoder layers 0..L-1, L+1 = final norm + head */
  unit: number
  kind: UnitKindValue
  /** decoder layer index for kind 'layer' */
  layer?: number
  /** tensor names with the shapes the config requires, in payload order */
  tensors: Array<{ name: string, shape: number[] }>
}

export const EMBED_TOKENS = 'model.embed_tokens.weight'
export const FINAL_NORM = 'model.norm.weight'
export const LM_HEAD = 'lm_head.weight'

/** Tensor names of decoder layer `i`, by role. */
export function layerTensorNames (i: number): Record<'inputNorm' | 'q' | 'k' | 'v' | 'o' | 'qNorm' | 'kNorm' | 'postNorm' | 'gate' | 'up' | 'down', string> {
  const p = `model.layers.${i}.`
  return {
    inputNorm: `${p}input_layernorm.weight`,
    q: `${p}self_attn.q_proj.weight`,
    k: `${p}self_attn.k_proj.weight`,
    v: `${p}self_attn.v_proj.weight`,
    o: `${p}self_attn.o_proj.weight`,
    qNorm: `${p}self_attn.q_norm.weight`,
    kNorm: `${p}self_attn.k_norm.weight`,
    postNorm: `${p}post_attention_layernorm.weight`,
    gate: `${p}mlp.gate_proj.weight`,
    up: `${p}mlp.up_proj.weight`,
    down: `${p}mlp.down_proj.weight`
  }
}

/** Shapes of decoder layer `i`'s tensors (linear weights are [out, in]). */
export function layerTensors (config: Qwen3Config, i: number): Array<{ name: string, shape: number[] }> {
  const { hiddenSize: h, numHeads, numKvHeads, headDim: d, intermediateSize: m } = config
  const n = layerTensorNames(i)
  return [
    { name: n.inputNorm, shape: [h] },
    { name: n.q, shape: [numHeads * d, h] },
    { name: n.k, shape: [numKvHeads * d, h] },
    { name: n.v, shape: [numKvHeads * d, h] },
    { name: n.o, shape: [h, numHeads * d] },
    { name: n.qNorm, shape: [d] },
    { name: n.kNorm, shape: [d] },
    { name: n.postNorm, shape: [h] },
    { name: n.gate, shape: [m, h] },
    { name: n.up, shape: [m, h] },
    { name: n.down, shape: [h, m] }
  ]
}

/**
 * Splits the model into units: embedding, each decoder layer, final norm + head.
 * With tie_word_embeddings the head unit holds only the norm: the head
 * reuses embed_tokens from unit 0.
 */
export function planUnits (config: Qwen3Config): UnitPlan[] {
  const { vocabSize: v, hiddenSize: h, numLayers } = config
  const units: UnitPlan[] = [{ unit: 0, kind: UnitKind.EMBEDDING, tensors: [{ name: EMBED_TOKENS, shape: [v, h] }] }]
  for (let i = 0; i < numLayers; i++) {
    units.push({ unit: i + 1, kind: UnitKind.LAYER, layer: i, tensors: layerTensors(config, i) })
  }
  const head = [{ name: FINAL_NORM, shape: [h] }]
  if (!config.tieWordEmbeddings) {
    head.push({ name: LM_HEAD, shape: [v, h] })
  }
  units.push({ unit: numLayers + 1, kind: UnitKind.HEAD, tensors: head })
  return units
}
