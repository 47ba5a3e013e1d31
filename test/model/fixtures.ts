import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { SafetensorsCheckpoint } from '../../src/model/safetensors/checkpoint.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

/** The shared fixtures live beside the repository (../shared), never inside it. */
export const FIXTURES_URL = new URL('../../../shared/fixtures/qwen3-tiny/', import.meta.url)

export const FIXTURE_VARIANTS = ['untied-f32', 'untied-bf16-sharded'] as const

export type FixtureVariant = typeof FIXTURE_VARIANTS[number]

export interface Expected {
  sequence: number[]
  full_logits: number[][]
  last_logits: number[]
  greedy: { prompt: number[], max_new_tokens: number, tokens: number[], step_logits: number[][] }
  debug: { last_position_residual_after_each_layer: number[][], last_position_final_normed_hidden: number[] }
}

export interface Fixture {
  dir: string
  config: Qwen3Config
  tensors: Map<string, RawTensor>
  expected: Expected
}

export function fixtureDir (variant: FixtureVariant): string {
  return fileURLToPath(new URL(`${variant}/`, FIXTURES_URL))
}

/** Reads a fixture checkpoint through the codec into memory (stands in for the chain loader's blocks). */
export async function loadFixture (variant: FixtureVariant): Promise<Fixture> {
  const dir = fixtureDir(variant)
  const config = parseQwen3Config(await readFile(`${dir}config.json`, 'utf8'))
  const expected = JSON.parse(await readFile(`${dir}expected.json`, 'utf8'))
  const ck = await SafetensorsCheckpoint.open(dir)
  const tensors = new Map<string, RawTensor>()
  try {
    for (const name of ck.names()) {
      tensors.set(name, await ck.read(name))
    }
  } finally {
    await ck.close()
  }
  return { dir, config, tensors, expected }
}

export function sourceOf (fixture: Fixture): MapWeightSource {
  return new MapWeightSource(fixture.tensors, fixture.dir)
}

export function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) {
    return Infinity
  }
  let m = 0
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]))
  }
  return m
}
