import { copyFile, mkdir, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEMO_DEFAULTS } from './demo-defaults.ts'
import { ModelError, ModelErrorCode } from './errors.ts'
import { Prng } from './prng.ts'
import { parseQwen3Config } from './qwen3/config.ts'
import { planUnits } from './qwen3/plan.ts'
import { fromFloat32 } from './safetensors/dtypes.ts'
import { encodeHeaderFromSpecs } from './safetensors/writer.ts'
import { qwen3TokenizerPrefix } from './tokenizer-prefix.ts'
import { bundledQwen3TokenizerFiles } from './tokenizer.ts'
import type { DemoCheckpointOptions } from './demo-defaults.ts'
import type { Qwen3Config } from './qwen3/config.ts'
import type { TensorSpec } from './safetensors/writer.ts'
import type { TokenizerPrefix } from './tokenizer-prefix.ts'

export { DEMO_DEFAULTS } from './demo-defaults.ts'
export type { DemoCheckpointOptions } from './demo-defaults.ts'

/** Ids the bundled Qwen3 tokenizer can emit (0 .. 151668). */
export const QWEN3_TOKENIZER_ID_COUNT = 151669

/** Standard deviation of the random weights (Hugging Face's initializer_range); norms are 1. */
export const DEMO_INIT_STD = 0.02

export const DEMO_README = `# RANDOM WEIGHTS - blyd demo checkpoint

This folder was written by blyd's writeDemoCheckpoint(). It has the layout of a
Hugging Face Qwen3 checkpoint (config.json, model.safetensors, tokenizer files)
but its weights are deterministic pseudo-random numbers, not a trained model.
Its output is meaningless text. config.json carries "blyd_demo.random_weights": true.
`

/** The tokenizer files: the bundled Qwen3 ones, or the prefix of them. */
async function writeTokenizer (dir: string, prefix: TokenizerPrefix | undefined): Promise<void> {
  if (prefix != null) {
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(prefix.tokenizerJson))
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(prefix.tokenizerConfig, null, 2) + '\n')
    return
  }
  const files = bundledQwen3TokenizerFiles()
  await copyFile(files.tokenizerJson, join(dir, 'tokenizer.json'))
  await copyFile(files.tokenizerConfig, join(dir, 'tokenizer_config.json'))
}

/**
 * Writes a deterministic random-weight Qwen3 checkpoint to `dir` in Hugging
 * Face layout. The same options always produce byte-identical files.
 * Returns the parsed config.
 */
export async function writeDemoCheckpoint (dir: string, options: DemoCheckpointOptions = {}): Promise<Qwen3Config> {
  if (options.merges != null && options.tokenizer === false) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'merges cuts the Qwen3 tokenizer: it needs tokenizer: true')
  }
  const prefix = options.merges != null ? await qwen3TokenizerPrefix(options.merges) : undefined
  // with a prefix of the tokenizer the vocab defaults to exactly its ids
  const o = { ...DEMO_DEFAULTS, ...(prefix != null ? { vocab: prefix.idCount } : {}), ...options }
  const tokenizer = prefix != null ? `prefix of ${o.merges} merges of the Qwen3 tokenizer` : 'Qwen3 tokenizer'
  const idCount = prefix?.idCount ?? QWEN3_TOKENIZER_ID_COUNT
  if (o.tokenizer && o.vocab < idCount) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `vocab ${o.vocab} does not cover the ${tokenizer}'s ${idCount} ids; raise it or pass tokenizer: false`)
  }
  const raw = {
    architectures: ['Qwen3ForCausalLM'],
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: prefix?.bosTokenId ?? 151643,
    eos_token_id: prefix?.eosTokenId ?? 151645,
    head_dim: o.headDim,
    hidden_act: 'silu',
    hidden_size: o.hidden,
    initializer_range: DEMO_INIT_STD,
    intermediate_size: o.intermediate,
    max_position_embeddings: 40960,
    max_window_layers: o.layers,
    model_type: 'qwen3',
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    num_key_value_heads: o.kvHeads,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1000000,
    sliding_window: null,
    tie_word_embeddings: o.tieWordEmbeddings,
    torch_dtype: o.dtype === 'BF16' ? 'bfloat16' : 'float32',
    use_cache: true,
    use_sliding_window: false,
    vocab_size: o.vocab,
    blyd_demo: { random_weights: true, seed: o.seed, note: 'deterministic random weights, not a trained model' }
  }
  const config = parseQwen3Config(raw)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'config.json'), JSON.stringify(raw, null, 2) + '\n')
  await writeFile(join(dir, 'README.md'), DEMO_README)
  if (o.tokenizer) {
    await writeTokenizer(dir, prefix)
  }
  const specs: TensorSpec[] = planUnits(config).flatMap(u => u.tensors).map(t => ({ name: t.name, dtype: o.dtype, shape: t.shape }))
  const rng = new Prng(o.seed)
  const handle = await open(join(dir, 'model.safetensors'), 'w')
  try {
    await handle.write(encodeHeaderFromSpecs(specs, { format: 'pt', blyd_demo: 'random-weights' }))
    for (const spec of specs) {
      const n = spec.shape.reduce((a, b) => a * b, 1)
      const values = new Float32Array(n)
      if (spec.shape.length === 1) {
        values.fill(1)
      } else {
        for (let i = 0; i < n; i++) {
          values[i] = rng.normal() * DEMO_INIT_STD
        }
      }
      await handle.write(fromFloat32(values, o.dtype))
    }
  } finally {
    await handle.close()
  }
  return config
}
