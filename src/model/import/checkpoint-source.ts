/**
 * A checkpoint folder opened for import and validated as a whole before
 * anything is written: config.json, the tokenizer files, every safetensors
 * header (offsets, sizes, shards), and every tensor the unit plan needs
 * (present, right shape, a known dtype). Tensor data is not read here.
 */
import { readFile, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { ModelError, ModelErrorCode } from '../errors.ts'
import { parseQwen3Config } from '../qwen3/config.ts'
import { LM_HEAD, planUnits } from '../qwen3/plan.ts'
import { SafetensorsCheckpoint } from '../safetensors/checkpoint.ts'
import { encodeHeaderFromSpecs } from '../safetensors/writer.ts'
import { IGNORED_TENSOR } from './constants.ts'
import { tokenizerFromManifest } from './manifest-tokenizer.ts'
import type { ManifestTokenizer } from './manifest.ts'
import type { Qwen3Config } from '../qwen3/config.ts'
import type { UnitPlan } from '../qwen3/plan.ts'
import type { TensorSpec } from '../safetensors/writer.ts'

/** One tensor's bytes inside a checkpoint file. */
export interface ByteRange {
  path: string
  tensor: string
  start: number
  length: number
}

/** One unit as it will be written: the payload is `header` then each range in order. */
export interface UnitSource {
  plan: UnitPlan
  specs: TensorSpec[]
  header: Uint8Array
  ranges: ByteRange[]
  /** payload size: header + data */
  bytes: number
}

export interface ImportSource {
  dir: string
  config: Qwen3Config
  tokenizer: ManifestTokenizer | null
  units: UnitSource[]
  /** tensors of the checkpoint the plan has no place for and that are dropped (rotary caches, a tied lm_head) */
  ignored: string[]
  /** sum of the units' payload sizes */
  totalBytes: number
}

export interface OpenImportSourceOptions {
  /** a tokenizer.json to use instead of the folder's (tokenizer_config.json beside it is used when present) */
  tokenizer?: string
}

/** Opens and validates `dir`; throws a ModelError naming the file and tensor at fault. */
export async function openImportSource (dir: string, options: OpenImportSourceOptions = {}): Promise<ImportSource> {
  const root = resolve(dir)
  const dirStat = await stat(root).catch(() => undefined)
  if (dirStat?.isDirectory() !== true) {
    throw new ModelError(ModelErrorCode.BAD_CHECKPOINT, 'not a checkpoint folder', { file: root })
  }
  const configPath = join(root, 'config.json')
  const configText = await readText(configPath, true) as string
  const config = parseQwen3Config(configText, configPath)
  const tokenizer = await readTokenizer(root, options.tokenizer, config)

  const checkpoint = await SafetensorsCheckpoint.open(root)
  try {
    const fileOf = new Map<string, string>()
    for (const f of checkpoint.files) {
      for (const name of f.names()) {
        if (checkpoint.entry(name) === f.entry(name)) {
          fileOf.set(name, f.path)
        }
      }
    }
    const plan = planUnits(config)
    const planned = new Set(plan.flatMap(u => u.tensors.map(t => t.name)))
    const ignored: string[] = []
    for (const name of checkpoint.names()) {
      if (planned.has(name)) {
        continue
      }
      if (IGNORED_TENSOR.test(name) || (name === LM_HEAD && config.tieWordEmbeddings)) {
        ignored.push(name)
        continue
      }
      throw new ModelError(ModelErrorCode.BAD_CHECKPOINT, 'the checkpoint holds a tensor the Qwen3 unit plan has no place for (is config.json the checkpoint\'s own?)', { file: fileOf.get(name), tensor: name })
    }
    let totalBytes = 0
    const units = plan.map((unit): UnitSource => {
      const specs: TensorSpec[] = []
      const ranges: ByteRange[] = []
      for (const t of unit.tensors) {
        const entry = checkpoint.entry(t.name)
        if (entry == null) {
          throw new ModelError(ModelErrorCode.MISSING_TENSOR, `the checkpoint lacks a tensor the config requires (unit ${unit.unit}, ${unit.kind})`, { file: root, tensor: t.name })
        }
        if (entry.shape.length !== t.shape.length || entry.shape.some((d, i) => d !== t.shape[i])) {
          throw new ModelError(ModelErrorCode.WRONG_SHAPE, `shape [${entry.shape.join(', ')}], config requires [${t.shape.join(', ')}]`, { file: fileOf.get(t.name), tensor: t.name })
        }
        specs.push({ name: t.name, dtype: entry.dtype, shape: t.shape.slice() })
        ranges.push({ path: fileOf.get(t.name) as string, tensor: t.name, start: entry.start, length: entry.length })
      }
      const header = encodeHeaderFromSpecs(specs)
      const bytes = header.byteLength + ranges.reduce((n, r) => n + r.length, 0)
      totalBytes += bytes
      return { plan: unit, specs, header, ranges, bytes }
    })
    return { dir: root, config, tokenizer, units, ignored, totalBytes }
  } finally {
    await checkpoint.close()
  }
}

async function readTokenizer (root: string, override: string | undefined, config: Qwen3Config): Promise<ManifestTokenizer | null> {
  let jsonPath = join(root, 'tokenizer.json')
  if (override != null) {
    jsonPath = resolve(override)
    if (await readText(jsonPath, false) == null) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, 'the --tokenizer file does not exist', { file: jsonPath })
    }
  }
  const tokenizerJson = await readText(jsonPath, false)
  if (tokenizerJson == null) {
    return null
  }
  const beside = override != null ? dirname(jsonPath) : root
  const tokenizer: ManifestTokenizer = {
    tokenizerJson,
    tokenizerConfig: await readText(join(beside, 'tokenizer_config.json'), false),
    chatTemplate: await readText(join(beside, 'chat_template.jinja'), false)
  }
  let built
  try {
    built = tokenizerFromManifest(tokenizer)
  } catch (err: any) {
    throw new ModelError(ModelErrorCode.BAD_TOKENIZER, err.message, { file: jsonPath }, { cause: err })
  }
  if (built.idCount > config.vocabSize) {
    throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `${basename(jsonPath)} emits ids up to ${built.idCount - 1} but vocab_size is ${config.vocabSize}`, { file: jsonPath })
  }
  return tokenizer
}

/** The file's text; null when absent and not required. */
async function readText (path: string, required: boolean): Promise<string | null> {
  try {
    return await readFile(path, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT' && !required) {
      return null
    }
    const what = err.code === 'ENOENT' ? 'file not found' : `cannot read (${String(err.code ?? err.message)})`
    throw new ModelError(ModelErrorCode.BAD_CHECKPOINT, what, { file: path }, { cause: err })
  }
}
