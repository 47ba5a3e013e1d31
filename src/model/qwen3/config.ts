import { ModelError, ModelErrorCode } from '../errors.ts'

/** The Qwen3 dimensions blyd uses, read from a Hugging Face config.json. */
export interface Qwen3Config {
  modelType: 'qwen3'
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  /** may differ from hiddenSize / numHeads (it does in Qwen3-8B's siblings and in the fixtures) */
  headDim: number
  rmsNormEps: number
  ropeTheta: number
  maxPositionEmbeddings: number
  tieWordEmbeddings: boolean
  bosTokenId?: number
  eosTokenIds: number[]
  /** the config as given, kept for the manifest */
  raw: Record<string, unknown>
}

/** Parses config.json (string or object); throws ERR_UNSUPPORTED_ARCHITECTURE / ERR_BAD_MODEL_CONFIG. */
export function parseQwen3Config (input: string | Record<string, unknown>, file?: string): Qwen3Config {
  let raw: Record<string, unknown>
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input)
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_CONFIG, `config is not valid JSON: ${err.message}`, { file }, { cause: err })
    }
  } else {
    raw = input
  }
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, 'config is not a JSON object', { file })
  }
  if (raw.model_type !== 'qwen3') {
    throw new ModelError(ModelErrorCode.UNSUPPORTED_ARCHITECTURE, `model_type is ${JSON.stringify(raw.model_type)}, only 'qwen3' is supported`, { file })
  }
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback
    if (!Number.isSafeInteger(v) || (v as number) <= 0) {
      throw new ModelError(ModelErrorCode.BAD_CONFIG, `${key} must be a positive integer, got ${JSON.stringify(raw[key])}`, { file })
    }
    return v as number
  }
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ModelError(ModelErrorCode.BAD_CONFIG, `${key} must be a positive number, got ${JSON.stringify(raw[key])}`, { file })
    }
    return v
  }
  const hiddenSize = int('hidden_size')
  const numHeads = int('num_attention_heads')
  const numKvHeads = int('num_key_value_heads', numHeads)
  const headDim = int('head_dim', Math.floor(hiddenSize / numHeads))
  if (numHeads % numKvHeads !== 0) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, { file })
  }
  if (headDim % 2 !== 0) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, `head_dim ${headDim} must be even for rotary embeddings`, { file })
  }
  if (raw.rope_scaling != null) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, 'rope_scaling is not supported', { file })
  }
  if (raw.hidden_act != null && raw.hidden_act !== 'silu') {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, `hidden_act ${JSON.stringify(raw.hidden_act)} is not supported, expected silu`, { file })
  }
  if (raw.attention_bias === true) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, 'attention_bias is not supported', { file })
  }
  if (raw.use_sliding_window === true) {
    throw new ModelError(ModelErrorCode.BAD_CONFIG, 'use_sliding_window is not supported', { file })
  }
  const eos = raw.eos_token_id
  let eosTokenIds: number[] = []
  if (Array.isArray(eos)) {
    eosTokenIds = eos.filter(Number.isSafeInteger)
  } else if (Number.isSafeInteger(eos)) {
    eosTokenIds = [eos as number]
  }
  return {
    modelType: 'qwen3',
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 1e6),
    maxPositionEmbeddings: int('max_position_embeddings', 40960),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    bosTokenId: Number.isSafeInteger(raw.bos_token_id) ? raw.bos_token_id as number : undefined,
    eosTokenIds,
    raw
  }
}
