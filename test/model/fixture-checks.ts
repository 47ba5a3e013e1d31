/**
 * The two reference checks every backend's fixture spec runs on a whole
 * model (a LayerRange with embedding and head): full-sequence logits, and
 * greedy decoding through the KV cache with each step's logits.
 */
import { expect } from 'aegir/chai'
import { argmax } from '../../src/model/sampling.ts'
import { maxAbsDiff } from './fixtures.ts'
import type { Fixture } from './fixtures.ts'
import type { LayerRange } from '../../src/model/qwen3/layer-range.ts'

/** Every position's logits of the fixture's sequence within `tol` of the reference. */
export async function checkFullLogits (model: LayerRange, fixture: Fixture, tol: number): Promise<void> {
  const session = model.createSession()
  try {
    const t = model.forwardTokens(session, fixture.expected.sequence)
    const got = await t.array() as number[][]
    t.dispose()
    expect(got).to.have.length(fixture.expected.sequence.length)
    for (let i = 0; i < got.length; i++) {
      expect(maxAbsDiff(got[i], fixture.expected.full_logits[i]), `position ${i}`).to.be.below(tol)
    }
  } finally {
    session.dispose()
  }
}

/**
 * Greedy decoding from the fixture's prompt: each step's logits within `tol`,
 * the tokens exactly; returns the session's length at the end.
 */
export async function checkGreedy (model: LayerRange, fixture: Fixture, tol: number): Promise<number> {
  const session = model.createSession()
  const { prompt, tokens, step_logits: stepLogits } = fixture.expected.greedy
  try {
    const got: number[] = []
    let feed = prompt
    for (let i = 0; i < tokens.length; i++) {
      const logits = await model.nextLogits(session, feed)
      expect(maxAbsDiff(logits, stepLogits[i]), `step ${i}`).to.be.below(tol)
      const id = argmax(logits)
      got.push(id)
      feed = [id]
    }
    expect(got).to.deep.equal(tokens)
    return session.length
  } finally {
    session.dispose()
  }
}
