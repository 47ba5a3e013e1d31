import { generate } from '../../src/model/generation/generate.ts'
import type { Fixture } from './fixtures.ts'
import type { TokenModel, TokenSession } from '../../src/model/generation/token-model.ts'

/** Ten prompts of 2 to 5 tokens for load tests, the fixture's own greedy prompt first. */
export function loadPrompts (fixture: Fixture): number[][] {
  const base = fixture.expected.greedy.prompt
  return Array.from({ length: 10 }, (_, k) => [(base[0] + 37 * k) % fixture.config.vocabSize, ...base.slice(1, base.length - (k % 4))])
}

/** The greedy continuation of each prompt through `model` (the reference a load test compares with). */
export async function greedyReferences<S extends TokenSession> (model: TokenModel<S>, prompts: number[][], maxNewTokens: number): Promise<number[][]> {
  const out: number[][] = []
  for (const prompt of prompts) {
    const it = generate(model, prompt, { maxNewTokens })
    let next = await it.next()
    while (next.done !== true) {
      next = await it.next()
    }
    out.push(next.value.tokens)
  }
  return out
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
