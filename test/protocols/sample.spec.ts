import { createHash } from 'node:crypto'
import { expect } from 'aegir/chai'
import { HashPrng, SampleError, SampleErrorCode, sampleIndices } from '../../src/protocols/sample.ts'

describe('protocols/sample', () => {
  const enc = new TextEncoder()

  it('HashPrng: block k = sha256("bly/sample/v1" || sha256(seed) || u64be(k)), read as u32be words', () => {
    const key = createHash('sha256').update('abc').digest()
    const words: number[] = []
    for (let k = 0; k < 2; k++) {
      const counter = Buffer.alloc(8)
      counter.writeBigUInt64BE(BigInt(k))
      const block = createHash('sha256').update(Buffer.concat([Buffer.from('bly/sample/v1'), key, counter])).digest()
      for (let i = 0; i < 32; i += 4) {
        words.push(block.readUInt32BE(i))
      }
    }
    const prng = new HashPrng(enc.encode('abc'))
    expect(Array.from({ length: 16 }, () => prng.nextU32())).to.deep.equal(words)
    expect(words.slice(0, 3)).to.deep.equal([3995780002, 3543699817, 2035325809])
  })

  it('uniform(n) stays in range and rejects out-of-range n', () => {
    const prng = new HashPrng(enc.encode('u'))
    for (const n of [1, 2, 3, 7, 1000, 2 ** 32]) {
      for (let i = 0; i < 50; i++) {
        const x = prng.uniform(n)
        expect(Number.isInteger(x) && x >= 0 && x < n, `uniform(${n}) = ${x}`).to.equal(true)
      }
    }
    expect(() => prng.uniform(0)).to.throw(SampleError, /from 1 to 2\^32/).with.property('code', SampleErrorCode.ARGUMENT)
    expect(() => prng.uniform(2 ** 32 + 1)).to.throw(SampleError, /from 1 to 2\^32/).with.property('code', SampleErrorCode.ARGUMENT)
  })

  it('sampleIndices: the first m of a forward Fisher-Yates shuffle, deterministic in the seed', () => {
    const items = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    const a = sampleIndices(items, enc.encode('seed'), 4)
    expect(a).to.deep.equal([16, 10, 13, 11])
    expect(sampleIndices(items, enc.encode('seed'), 4)).to.deep.equal(a)
    // a longer sample extends the shorter one (the same first steps)
    expect(sampleIndices(items, enc.encode('seed'), 7).slice(0, 4)).to.deep.equal(a)
    expect(sampleIndices(items, enc.encode('seed'), 99).sort()).to.deep.equal(items)
    expect(sampleIndices(items, enc.encode('other'), 4)).to.not.deep.equal(a)
    expect(sampleIndices([], enc.encode('seed'), 4)).to.deep.equal([])
    expect(() => sampleIndices(items, enc.encode('seed'), -1)).to.throw(SampleError, />= 0/).with.property('code', 'ERR_SAMPLE_ARGUMENT')
  })

  it('every item is equally likely at every position (10 items, 20000 seeds)', () => {
    const counts = Array.from({ length: 3 }, () => new Array(10).fill(0))
    const seeds = 20_000
    for (let s = 0; s < seeds; s++) {
      const seed = Buffer.alloc(4)
      seed.writeUInt32BE(s)
      sampleIndices([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], seed, 3).forEach((item, pos) => { counts[pos][item]++ })
    }
    for (const row of counts) {
      // chi-square, 9 degrees of freedom: 40 is far past the 0.9999 quantile (~33.7)
      const expected = seeds / 10
      const chi2 = row.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0)
      expect(chi2, `counts ${row.join(' ')}`).to.be.below(40)
    }
  })
})
