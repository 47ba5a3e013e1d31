/**
 * The validator's sample seed: seedSig = Ed25519(validatorKey,
 * "bly/pol-seed/v1" || proposalId), verified with the public key; the
 * sample it gives; and the grinding test of the design: a proposer trying
 * 1000 proposal variants cannot predict, hence cannot choose, the windows a
 * validator will measure.
 */
import { createHash, sign } from 'node:crypto'
import { expect } from 'aegir/chai'
import { ed25519PrivateKey } from '../../src/chain/block-crypto.ts'
import { sampleFor, seedMessage, signSeed, verifySeed } from '../../src/learning/pol/seed.ts'
import { sampleIndices } from '../../src/protocols/sample.ts'
import { signer } from '../chain/helpers.ts'

const validator = signer(41)
const proposers = [signer(42), signer(43), signer(44)]
const EVAL = Uint32Array.from({ length: 200 }, (_, i) => i * 10 + 3)
const M = 8

function variantId (i: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`proposal variant ${i}`).digest())
}

function overlap (a: number[], b: Set<number>): number {
  return a.filter(x => b.has(x)).length
}

describe('learning/pol/seed', () => {
  it('seedMessage = utf8("bly/pol-seed/v1") || proposalId; seedSig is the RFC 8032 signature of it (deterministic)', async () => {
    const pid = variantId(0)
    expect(Buffer.from(seedMessage(pid)).toString('hex')).to.equal(Buffer.from('bly/pol-seed/v1').toString('hex') + Buffer.from(pid).toString('hex'))
    const sig = await signSeed(validator, pid)
    expect(sig).to.have.length(64)
    expect(await signSeed(validator, pid)).to.deep.equal(sig)
    const direct = sign(null, seedMessage(pid), ed25519PrivateKey(new Uint8Array(32).fill(41)))
    expect(Buffer.from(sig)).to.deep.equal(direct)
    expect(verifySeed(validator.publicKey, pid, sig)).to.equal(true)
  })

  it('verifySeed refuses another key, another proposal, a flipped bit, a wrong length', async () => {
    const pid = variantId(1)
    const sig = await signSeed(validator, pid)
    expect(verifySeed(proposers[0].publicKey, pid, sig)).to.equal(false)
    expect(verifySeed(validator.publicKey, variantId(2), sig)).to.equal(false)
    const flipped = Uint8Array.from(sig)
    flipped[63] ^= 0x10
    expect(verifySeed(validator.publicKey, pid, flipped)).to.equal(false)
    expect(verifySeed(validator.publicKey, pid, sig.subarray(0, 63))).to.equal(false)
    expect(verifySeed(new Uint8Array(31), pid, sig)).to.equal(false)
  })

  it('sampleFor = the Fisher-Yates sample keyed with sha256(seedSig): min(m, eval windows) distinct eval windows', async () => {
    const sig = await signSeed(validator, variantId(3))
    const s = sampleFor(sig, EVAL, M)
    expect(s).to.deep.equal(sampleIndices(EVAL, sig, M))
    expect(new Set(s).size).to.equal(M)
    expect(s.every(w => EVAL.includes(w))).to.equal(true)
    expect(sampleFor(sig, EVAL.subarray(0, 5), M)).to.have.length(5)
  })

  it('grinding: over 1000 proposal variants the validator\'s samples are uniform, and a proposer\'s predictions (its own key) match them no better than chance', async () => {
    const counts = new Map<number, number>()
    const real: number[][] = []
    for (let i = 0; i < 1000; i++) {
      const s = sampleFor(await signSeed(validator, variantId(i)), EVAL, M)
      real.push(s)
      for (const w of s) {
        counts.set(w, (counts.get(w) ?? 0) + 1)
      }
    }
    // uniform: every eval window is picked ~1000 x 8 / 200 = 40 times; chi-square over 200 windows (199 d.o.f.)
    const expected = 1000 * M / EVAL.length
    const chi2 = [...EVAL].reduce((sum, w) => sum + ((counts.get(w) ?? 0) - expected) ** 2 / expected, 0)
    expect(chi2).to.be.below(199 + 5 * Math.sqrt(2 * 199))
    // a proposer computes its prediction with the only keys it has: overlap per variant is hypergeometric, mean m^2/N = 0.32
    const mean = M * M / EVAL.length
    const variance = M * (M / EVAL.length) * ((EVAL.length - M) / EVAL.length) * ((EVAL.length - M) / (EVAL.length - 1))
    for (const proposer of proposers) {
      let total = 0
      for (let i = 0; i < 1000; i++) {
        const predicted = sampleFor(await signSeed(proposer, variantId(i)), EVAL, M)
        total += overlap(predicted, new Set(real[i]))
      }
      expect(Math.abs(total - 1000 * mean)).to.be.below(5 * Math.sqrt(1000 * variance))
    }
  })

  it('grinding: the variants a proposer picks because its prediction favours windows it overfit are sampled like any other', async () => {
    // the proposer overfit 20 public eval windows and wants the validator to measure those
    const favoured = new Set([...EVAL].filter((_, i) => i % 10 === 0))
    const proposer = proposers[0]
    const variants = []
    for (let i = 0; i < 1000; i++) {
      const predicted = sampleFor(await signSeed(proposer, variantId(i)), EVAL, M)
      const actual = sampleFor(await signSeed(validator, variantId(i)), EVAL, M)
      variants.push({ predicted: overlap(predicted, favoured), actual: overlap(actual, favoured) })
    }
    // it publishes the 50 variants its prediction likes best
    const picked = variants.sort((a, b) => b.predicted - a.predicted).slice(0, 50)
    const predictedMean = picked.reduce((s, v) => s + v.predicted, 0) / picked.length
    const actualMean = picked.reduce((s, v) => s + v.actual, 0) / picked.length
    const chance = M * favoured.size / EVAL.length // 0.8 favoured windows per sample
    const sd = Math.sqrt(M * (favoured.size / EVAL.length) * (1 - favoured.size / EVAL.length) / picked.length)
    expect(predictedMean).to.be.above(chance + 1.5)
    expect(Math.abs(actualMean - chance)).to.be.below(4 * sd)
  })
})
