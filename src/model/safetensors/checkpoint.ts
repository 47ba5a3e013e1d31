import { readFile, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { ModelError, ModelErrorCode } from '../errors.ts'
import { SafetensorsFile } from './reader.ts'
import type { RawTensor } from './dtypes.ts'
import type { TensorEntry } from './header.ts'

export const INDEX_FILE = 'model.safetensors.index.json'
export const SINGLE_FILE = 'model.safetensors'

/**
 * A Hugging Face checkpoint folder: `model.safetensors`, or shards listed in
 * `model.safetensors.index.json`. Tensors are read from disk one at a time.
 */
export class SafetensorsCheckpoint {
  readonly dir: string
  readonly files: SafetensorsFile[]
  private readonly fileOf: Map<string, SafetensorsFile>

  private constructor (dir: string, files: SafetensorsFile[], fileOf: Map<string, SafetensorsFile>) {
    this.dir = dir
    this.files = files
    this.fileOf = fileOf
  }

  static async open (dir: string): Promise<SafetensorsCheckpoint> {
    const indexPath = join(dir, INDEX_FILE)
    if (await exists(indexPath)) {
      return SafetensorsCheckpoint.openSharded(dir, indexPath)
    }
    const single = join(dir, SINGLE_FILE)
    if (!await exists(single)) {
      throw new ModelError(ModelErrorCode.BAD_SHARD_INDEX, `neither ${INDEX_FILE} nor ${SINGLE_FILE} found`, { file: dir })
    }
    const file = await SafetensorsFile.open(single)
    return new SafetensorsCheckpoint(dir, [file], new Map(file.names().map(n => [n, file])))
  }

  names (): string[] {
    return [...this.fileOf.keys()]
  }

  has (name: string): boolean {
    return this.fileOf.has(name)
  }

  entry (name: string): TensorEntry | undefined {
    return this.fileOf.get(name)?.entry(name)
  }

  async read (name: string): Promise<RawTensor> {
    const file = this.fileOf.get(name)
    if (file == null) {
      throw new ModelError(ModelErrorCode.MISSING_TENSOR, 'tensor not in checkpoint', { file: this.dir, tensor: name })
    }
    return file.read(name)
  }

  async close (): Promise<void> {
    await Promise.all(this.files.map(async f => { await f.close() }))
  }

  private static async openSharded (dir: string, indexPath: string): Promise<SafetensorsCheckpoint> {
    let index: any
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'))
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_SHARD_INDEX, `unreadable index: ${err.message}`, { file: indexPath }, { cause: err })
    }
    const map = index?.weight_map
    if (map == null || typeof map !== 'object' || Array.isArray(map)) {
      throw new ModelError(ModelErrorCode.BAD_SHARD_INDEX, 'index has no weight_map object', { file: indexPath })
    }
    const shardNames = new Set<string>()
    for (const [tensor, shard] of Object.entries(map)) {
      // shard names are plain file names inside dir: never follow a path out of it
      if (typeof shard !== 'string' || shard !== basename(shard) || shard === '' || shard.startsWith('.')) {
        throw new ModelError(ModelErrorCode.BAD_SHARD_INDEX, `weight_map entry is not a shard file name: ${JSON.stringify(shard)}`, { file: indexPath, tensor })
      }
      shardNames.add(shard)
    }
    const files: SafetensorsFile[] = []
    const byShard = new Map<string, SafetensorsFile>()
    try {
      for (const shard of shardNames) {
        const path = join(dir, shard)
        if (!await exists(path)) {
          throw new ModelError(ModelErrorCode.BAD_SHARD_INDEX, `shard ${shard} named by the index is missing`, { file: path })
        }
        const f = await SafetensorsFile.open(path)
        files.push(f)
        byShard.set(shard, f)
      }
      const fileOf = new Map<string, SafetensorsFile>()
      for (const [tensor, shard] of Object.entries(map as Record<string, string>)) {
        const f = byShard.get(shard) as SafetensorsFile
        if (f.entry(tensor) == null) {
          throw new ModelError(ModelErrorCode.MISSING_TENSOR, `index places it in ${shard}, which does not hold it`, { file: f.path, tensor })
        }
        fileOf.set(tensor, f)
      }
      return new SafetensorsCheckpoint(dir, files, fileOf)
    } catch (err) {
      await Promise.all(files.map(async f => { await f.close() }))
      throw err
    }
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
