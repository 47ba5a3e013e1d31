/**
 * Damaged copies of the fixture checkpoints: each variant copies a fixture
 * to a fresh folder and breaks it in one way an import must refuse.
 */
import { chmod, cp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { decodeSafetensors, encodeSafetensors } from '../../src/model/safetensors/index.ts'
import { fixtureDir } from './fixtures.ts'
import type { FixtureVariant } from './fixtures.ts'

export interface Damage {
  name: string
  fixture: FixtureVariant
  /** the ModelError code the import fails with */
  code: string
  /** text the one-line error must contain */
  says: string
  apply(dir: string): Promise<void>
}

const F32 = 'model.safetensors'
const SHARD1 = 'model-00001-of-00002.safetensors'
const SHARD2 = 'model-00002-of-00002.safetensors'

async function editJson (file: string, edit: (v: any) => void): Promise<void> {
  const v = JSON.parse(await readFile(file, 'utf8'))
  edit(v)
  await writeFile(file, JSON.stringify(v, null, 2))
}

/** rewrites a safetensors file through the codec, letting `edit` change the tensor list */
async function rewrite (file: string, edit: (tensors: Map<string, any>) => void): Promise<void> {
  const { tensors } = decodeSafetensors(new Uint8Array(await readFile(file)))
  edit(tensors)
  await writeFile(file, encodeSafetensors(tensors))
}

export const DAMAGES: Damage[] = [
  {
    name: 'cut file',
    fixture: 'untied-f32',
    code: ModelErrorCode.OFFSETS_PAST_EOF,
    says: 'past the',
    apply: async dir => { await truncate(join(dir, F32), 600_000) }
  },
  {
    name: 'bad header JSON',
    fixture: 'untied-f32',
    code: ModelErrorCode.BAD_HEADER_JSON,
    says: 'not valid JSON',
    apply: async dir => {
      const bytes = await readFile(join(dir, F32))
      bytes[8] = 0x58 // the opening '{' becomes 'X'
      await writeFile(join(dir, F32), bytes)
    }
  },
  {
    name: 'header length past EOF',
    fixture: 'untied-bf16-sharded',
    code: ModelErrorCode.HEADER_PAST_EOF,
    says: 'runs past the end',
    apply: async dir => {
      const bytes = await readFile(join(dir, SHARD2))
      bytes.writeBigUInt64LE(BigInt(bytes.length), 0)
      await writeFile(join(dir, SHARD2), bytes)
    }
  },
  {
    name: 'wrong dtype size',
    fixture: 'untied-f32',
    code: ModelErrorCode.SIZE_MISMATCH,
    says: 'needs',
    apply: async dir => {
      const bytes = await readFile(join(dir, F32))
      const n = Number(bytes.readBigUInt64LE(0))
      const header = bytes.subarray(8, 8 + n).toString('latin1').replace('"dtype":"F32"', '"dtype":"F16"')
      bytes.write(header, 8, 'latin1')
      await writeFile(join(dir, F32), bytes)
    }
  },
  {
    name: 'missing tensor',
    fixture: 'untied-f32',
    code: ModelErrorCode.MISSING_TENSOR,
    says: 'model.layers.2.mlp.up_proj.weight',
    apply: async dir => { await rewrite(join(dir, F32), t => { t.delete('model.layers.2.mlp.up_proj.weight') }) }
  },
  {
    name: 'tensor of the wrong shape',
    fixture: 'untied-f32',
    code: ModelErrorCode.WRONG_SHAPE,
    says: 'model.norm.weight',
    apply: async dir => {
      await rewrite(join(dir, F32), t => {
        const norm = t.get('model.norm.weight')
        t.set('model.norm.weight', { dtype: norm.dtype, shape: [32], data: norm.data.subarray(0, 128) })
      })
    }
  },
  {
    name: 'tensor the plan has no place for',
    fixture: 'untied-f32',
    code: ModelErrorCode.BAD_CHECKPOINT,
    says: 'model.layers.9.mlp.up_proj.weight',
    apply: async dir => {
      await rewrite(join(dir, F32), t => { t.set('model.layers.9.mlp.up_proj.weight', { dtype: 'F32', shape: [2], data: new Uint8Array(8) }) })
    }
  },
  {
    name: 'missing shard',
    fixture: 'untied-bf16-sharded',
    code: ModelErrorCode.BAD_SHARD_INDEX,
    says: 'is missing',
    apply: async dir => { await rm(join(dir, SHARD1)) }
  },
  {
    name: 'index naming a shard without the tensor',
    fixture: 'untied-bf16-sharded',
    code: ModelErrorCode.MISSING_TENSOR,
    says: 'does not hold it',
    apply: async dir => {
      await editJson(join(dir, 'model.safetensors.index.json'), v => {
        const [name] = Object.keys(v.weight_map).filter(k => v.weight_map[k] === SHARD1)
        v.weight_map[name] = SHARD2
      })
    }
  },
  {
    name: 'unknown architecture',
    fixture: 'untied-f32',
    code: ModelErrorCode.UNSUPPORTED_ARCHITECTURE,
    says: 'only \'qwen3\' is supported',
    apply: async dir => { await editJson(join(dir, 'config.json'), v => { v.model_type = 'llama' }) }
  },
  {
    name: 'bad config JSON',
    fixture: 'untied-bf16-sharded',
    code: ModelErrorCode.BAD_CONFIG,
    says: 'not valid JSON',
    apply: async dir => { await writeFile(join(dir, 'config.json'), '{"model_type": "qwen3",') }
  },
  {
    name: 'no config.json',
    fixture: 'untied-f32',
    code: ModelErrorCode.BAD_CHECKPOINT,
    says: 'config.json',
    apply: async dir => { await rm(join(dir, 'config.json')) }
  }
]

/** copies the damage's fixture to `dir` (checkpoint files only) and applies the damage */
export async function damagedCopy (damage: Damage, dir: string): Promise<void> {
  await cp(fixtureDir(damage.fixture), dir, { recursive: true, filter: src => !src.endsWith('expected.json') })
  // the shared fixtures are read-only; the copies must be writable to be damaged
  await chmod(dir, 0o755)
  for (const f of await readdir(dir)) {
    await chmod(join(dir, f), 0o644)
  }
  await damage.apply(dir)
}
