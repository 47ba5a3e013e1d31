/**
 * The integer acceptance rule (protocols/attestation.md, "The rule"):
 * each condition at its boundary, the reason of the first failing one,
 * quorum math, and the micro-nat conversion.
 */
import { expect } from 'aegir/chai'
import { defaultParams } from '../../src/learning/params-defaults.ts'
import { floorDiv, quorum, rule, studentScaleMilli, tStatistic, tThresholdMilli, toMicroNats } from '../../src/learning/pol/rule.ts'

const P = defaultParams()

function pairs (base: number[], cand: number[]): { base: bigint[], cand: bigint[] } {
  return { base: base.map(BigInt), cand: cand.map(BigInt) }
}

describe('learning/pol/rule', () => {
  it('quorum = ceil(n x 2 / 3) by default: 1 of 1, 2 of 2, 2 of 3, 3 of 4, 4 of 5, 4 of 6, 5 of 7', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(n => quorum(n, P))).to.deep.equal([1, 2, 2, 3, 4, 4, 5])
    expect([1, 2, 3, 4].map(n => quorum(n, { quorumNum: 3, quorumDen: 4 }))).to.deep.equal([1, 2, 3, 3])
    expect(quorum(100, { quorumNum: 1, quorumDen: 1 })).to.equal(100)
  })

  it('floorDiv floors negative quotients (BigInt / truncates)', () => {
    expect(floorDiv(7n, 2n)).to.equal(3n)
    expect(floorDiv(-7n, 2n)).to.equal(-4n)
    expect(floorDiv(-6n, 2n)).to.equal(-3n)
    expect(floorDiv(-1n, 1_000_000n)).to.equal(-1n)
  })

  it('accepts a clear, consistent gain; reports S1, S2, B and gain_ppm = floor(S1 x 1e6 / B)', () => {
    const r = rule(pairs([1000, 1000, 1000, 1000], [980, 981, 979, 980]), [], P)
    expect(r).to.include({ pass: true, reason: 'ok', m: 4, baseSum: 4000n, candSum: 3920n, s1: 80n, s2: 400n + 361n + 441n + 400n, gainPpm: 20000n })
    expect(tStatistic(r)).to.be.closeTo(80 / Math.sqrt((4 * 1602 - 6400) / 3), 1e-9)
  })

  it('too-few-windows: m < 2 (no paired test on one window)', () => {
    expect(rule(pairs([1000], [500]), [], P)).to.include({ pass: false, reason: 'too-few-windows' })
    expect(rule(pairs([], []), [], P)).to.include({ pass: false, reason: 'too-few-windows', gainPpm: null })
  })

  it('insufficient-gain: gain_ppm < minGainPpm, exactly at the boundary; a loss (negative gain) floors down', () => {
    // S1 x 1e6 / B = 4999.x -> 4999 < 5000
    const below = rule(pairs([1_000_000, 1_000_000], [995_000, 995_001]), [], P)
    expect(below).to.include({ reason: 'insufficient-gain', gainPpm: 4999n })
    const at = rule(pairs([1_000_000, 1_000_000], [995_000, 995_000]), [], P)
    expect(at).to.include({ pass: true, gainPpm: 5000n })
    // a tiny loss: -0.5 ppm floors to -1, never rounds up to 0 (minGainPpm 0 still refuses a loss)
    const loss = rule(pairs([1_000_000, 1_000_000], [1_000_000, 1_000_001]), [], { ...P, minGainPpm: 0 })
    expect(loss.gainPpm).to.equal(-1n)
    expect(loss.reason).to.equal('insufficient-gain')
    expect(rule(pairs([0, 0], [0, 0]), [], P)).to.include({ reason: 'insufficient-gain', gainPpm: null })
  })

  it('not-significant: S1^2 (m-1) 1e6 < tEff^2 (m S2 - S1^2), tEff = tCritMilli scaled to Student\'s t at m - 1 df, at the boundary', () => {
    // d = (+3, -1): S1 = 2, S2 = 10, m = 2 -> t = 2 / sqrt((20 - 4) / 1) = 0.5; at df 1 tEff = ceil(tCrit x 6314 / 1645)
    const base = [1000, 1000]
    // tCrit 130: ceil(130 x 6314 / 1645) = 499 <= 500; tCrit 131: 503 > 500
    const half = rule(pairs(base, [997, 1001]), [], { ...P, minGainPpm: 0, tCritMilli: 130 })
    expect(half).to.include({ pass: true, reason: 'ok' })
    expect(tStatistic(half)).to.equal(0.5)
    expect(rule(pairs(base, [997, 1001]), [], { ...P, minGainPpm: 0, tCritMilli: 131 })).to.include({ reason: 'not-significant' })
    // all differences equal: zero spread, any positive S1 is significant
    expect(rule(pairs(base, [990, 990]), [], { ...P, tCritMilli: 100_000 })).to.include({ pass: true })
    // S1 <= 0 never is, even with tCritMilli 0
    expect(rule(pairs(base, [1000, 1000]), [], { ...P, minGainPpm: 0, tCritMilli: 0 })).to.include({ reason: 'not-significant' })
  })

  it('regression: (sum cand - sum base) x 1e6 <= maxRegressionPpm x sum base on every regression dataset', () => {
    const main = pairs([1000, 1000, 1000], [980, 980, 981])
    const ok = pairs([1_000_000, 1_000_000], [1_020_000, 1_020_000]) // exactly +2%
    const bad = pairs([1_000_000, 1_000_000], [1_020_000, 1_020_001])
    expect(rule(main, [ok], P)).to.include({ pass: true })
    const r = rule(main, [ok, bad], P)
    expect(r).to.include({ pass: false, reason: 'regression' })
    expect(r.regressions).to.deep.equal([{ increasePpm: 20000n, pass: true }, { increasePpm: 20000n, pass: false }])
    // an empty regression sample (a dataset without eval windows) is no evidence of regression
    expect(rule(main, [pairs([], [])], P)).to.include({ pass: true })
  })

  it('the first failing condition names the reason (gain before significance before regression)', () => {
    const main = pairs([1000, 1000], [1001, 1002])
    expect(rule(main, [pairs([1, 1], [9, 9])], P).reason).to.equal('insufficient-gain')
  })

  it('works far beyond 2^53 without loss (BigInt all the way)', () => {
    const big = 100n * 2n ** 56n
    const r = rule({ base: [big, big], cand: [big - big / 100n, big - big / 100n] }, [], P)
    expect(r).to.include({ pass: true, gainPpm: 10000n })
  })

  it('toMicroNats rounds to micro-nats and refuses NaN, Inf and negative losses', () => {
    expect(toMicroNats(2.3456789)).to.equal(2_345_679n)
    expect(toMicroNats(0)).to.equal(0n)
    for (const bad of [Number.NaN, Infinity, -Infinity, -0.1]) {
      expect(() => toMicroNats(bad)).to.throw(RangeError)
    }
  })

  it('few windows need a larger t: the threshold follows Student\'s t, never below the normal quantile, and reaches it past 1000 df', () => {
    expect(tThresholdMilli(1645, 2)).to.equal(6314n)
    expect(tThresholdMilli(1645, 17)).to.equal(1746n)
    expect(tThresholdMilli(1645, 65)).to.equal(1671n)
    expect(tThresholdMilli(1645, 5000)).to.equal(1645n)
    let previous = studentScaleMilli(1)
    for (let df = 2; df <= 2000; df++) {
      const v = studentScaleMilli(df)
      expect(v <= previous && v >= 1645n, `df ${df}`).to.equal(true)
      previous = v
    }
    // t = 2 over 2 windows (d = 30, 10) passed the normal 1.645 before; at 1 df it needs 6.314
    const d = [1000, 1000]
    const noisy = rule(pairs(d, [970, 990]), [], { ...P, minGainPpm: 0 })
    expect(tStatistic(noisy)).to.equal(2)
    expect(noisy.reason).to.equal('not-significant')
    // the same t over many windows passes: 64 windows alternating d = 30, 10 have t far above 1.669
    const many = rule(pairs(Array(64).fill(1000), Array.from({ length: 64 }, (_, i) => i % 2 === 0 ? 970 : 990)), [], { ...P, minGainPpm: 0 })
    expect(many.reason).to.equal('ok')
  })
})
