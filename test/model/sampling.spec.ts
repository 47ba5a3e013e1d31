import { expect } from 'aegir/chai'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { Prng } from '../../src/model/prng.ts'
import { Sampler, argmax } from '../../src/model/sampling.ts'

function logitsFrom (rng: Prng, n: number): Float32Array {
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    x[i] = rng.normal() * 2
  }
  return x
}

describe('model/sampling', () => {
  const logits = logitsFrom(new Prng(42), 1000)

  it('the PRNG is deterministic per seed and spread over [0, 1)', () => {
    const a = new Prng(7)
    const b = new Prng(7)
    const c = new Prng(8)
    const xs = Array.from({ length: 1000 }, () => a.next())
    expect(Array.from({ length: 1000 }, () => b.next())).to.deep.equal(xs)
    expect(Array.from({ length: 1000 }, () => c.next())).to.not.deep.equal(xs)
    expect(Math.min(...xs)).to.be.at.least(0)
    expect(Math.max(...xs)).to.be.below(1)
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length
    expect(mean).to.be.within(0.45, 0.55)
  })

  it('greedy picks the argmax', () => {
    const s = new Sampler({ temperature: 0 })
    expect(s.sample(logits)).to.equal(argmax(logits))
    expect(new Sampler({ temperature: 1, topK: 1, seed: 3 }).sample(logits)).to.equal(argmax(logits))
    expect(new Sampler({ temperature: 1, topP: 1e-9, seed: 3 }).sample(logits)).to.equal(argmax(logits))
  })

  it('is reproducible with a seed and varies across seeds', () => {
    const run = (seed: number): number[] => {
      const s = new Sampler({ temperature: 1, topK: 50, topP: 0.9, seed })
      return Array.from({ length: 64 }, () => s.sample(logits))
    }
    expect(run(5)).to.deep.equal(run(5))
    expect(run(5)).to.not.deep.equal(run(6))
  })

  it('top-k and top-p restrict the candidates', () => {
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a])
    const top5 = new Set(order.slice(0, 5))
    const s = new Sampler({ temperature: 2, topK: 5, seed: 1 })
    const seen = new Set(Array.from({ length: 500 }, () => s.sample(logits)))
    expect([...seen].every(id => top5.has(id))).to.equal(true)
    expect(seen.size).to.equal(5)
    // top-p on a two-token distribution: p(a) = 0.73 < 0.8, so both a and b are kept; at 0.7 only a
    const two = new Float32Array([1, 0, -50])
    const keepBoth = new Sampler({ temperature: 1, topP: 0.8, seed: 1 })
    expect(new Set(Array.from({ length: 200 }, () => keepBoth.sample(two)))).to.deep.equal(new Set([0, 1]))
    const keepOne = new Sampler({ temperature: 1, topP: 0.7, seed: 1 })
    expect(new Set(Array.from({ length: 200 }, () => keepOne.sample(two)))).to.deep.equal(new Set([0]))
  })

  it('samples in proportion to the softmax', () => {
    const three = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.2)])
    const s = new Sampler({ temperature: 1, seed: 11 })
    const counts = [0, 0, 0]
    for (let i = 0; i < 20000; i++) {
      counts[s.sample(three)]++
    }
    expect(counts[0] / 20000).to.be.within(0.48, 0.52)
    expect(counts[1] / 20000).to.be.within(0.28, 0.32)
    expect(counts[2] / 20000).to.be.within(0.18, 0.22)
  })

  it('repetition penalty pushes seen tokens down', () => {
    const x = new Float32Array([2, 1.5, -1])
    expect(new Sampler({ repetitionPenalty: 1.5 }).sample(x, [0])).to.equal(1)
    expect(new Sampler({ repetitionPenalty: 1 }).sample(x, [0])).to.equal(0)
    // a negative logit becomes more negative, not less
    expect(new Sampler({ repetitionPenalty: 100 }).sample(new Float32Array([-0.1, -0.2]), [1])).to.equal(0)
    expect(x[0]).to.equal(2)
  })

  it('rejects bad options with a code', () => {
    for (const bad of [{ temperature: -1 }, { topK: 1.5 }, { topP: 0 }, { topP: 1.5 }, { repetitionPenalty: 0 }, { seed: 0.5 }]) {
      expect(() => new Sampler(bad)).to.throw().with.property('code', ModelErrorCode.BAD_OPTIONS)
    }
  })
})
