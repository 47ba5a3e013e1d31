import { expect } from 'aegir/chai'
import { datasetWindows, sampleEvalWindows, windowTokens } from '../../src/learning/dataset-windows.ts'
import { isEvalWindow } from '../../src/protocols/dataset.ts'
import type { TokenStream } from '../../src/protocols/dataset.ts'

function stream (...sequences: number[][]): TokenStream {
  const offsets = [0]
  for (const s of sequences) {
    offsets.push(offsets[offsets.length - 1] + s.length)
  }
  return { tokens: Uint32Array.from(sequences.flat()), offsets: Uint32Array.from(offsets) }
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i)
const ID = new Uint8Array(32).fill(9)

describe('learning/dataset-windows', () => {
  it('windows hold the stream\'s tokens, never span two sequences, and follow the split rule', () => {
    const s = stream(range(0, 7), range(100, 1), range(200, 4), range(300, 9))
    const w = datasetWindows(ID, s, { splitTokens: 3, evalPermille: 500 })
    // 7 -> 3+3 (the 7th token dropped); 1 -> none; 4 -> 3 (the 4th dropped); 9 -> 3+3+3
    expect(Array.from({ length: w.split.count }, (_, i) => Array.from(windowTokens(w, i)))).to.deep.equal([
      [0, 1, 2], [3, 4, 5], [200, 201, 202], [300, 301, 302], [303, 304, 305], [306, 307, 308]
    ])
    for (let i = 0; i < w.split.count; i++) {
      expect(w.split.evalWindows.includes(i)).to.equal(isEvalWindow(ID, i, 500))
    }
    expect(() => windowTokens(w, w.split.count)).to.throw(RangeError)
    const kept = datasetWindows(ID, stream(range(0, 8)), { splitTokens: 3, evalPermille: 0 })
    expect(Array.from(windowTokens(kept, 2))).to.deep.equal([6, 7])
  })

  it('sampleEvalWindows: m distinct eval windows, deterministic in the seed, a prefix for smaller m', () => {
    const w = datasetWindows(ID, stream(range(0, 4000)), { splitTokens: 4, evalPermille: 200 })
    const evalSet = new Set(w.split.evalWindows)
    expect(evalSet.size).to.be.above(100)
    const seed = new TextEncoder().encode('validator signature')
    const a = sampleEvalWindows(w, seed, 64)
    expect(a).to.have.length(64)
    expect(new Set(a).size).to.equal(64)
    expect(a.every(i => evalSet.has(i))).to.equal(true)
    expect(sampleEvalWindows(w, seed, 64)).to.deep.equal(a)
    expect(sampleEvalWindows(w.split, seed, 16)).to.deep.equal(a.slice(0, 16))
    expect(sampleEvalWindows(w, new TextEncoder().encode('another signature'), 64)).to.not.deep.equal(a)
    // asking for more than there are gives all of them, shuffled
    const all = sampleEvalWindows(w, seed, 1_000_000)
    expect(all.slice().sort((x, y) => x - y)).to.deep.equal(Array.from(w.split.evalWindows))
    // no eval windows, no sample
    expect(sampleEvalWindows(datasetWindows(ID, stream(range(0, 40)), { splitTokens: 4, evalPermille: 0 }), seed, 5)).to.deep.equal([])
  })

  it('a sample is spread over the whole eval part (not biased to its start)', () => {
    const w = datasetWindows(ID, stream(range(0, 40_000)), { splitTokens: 4, evalPermille: 100 })
    const n = w.split.evalWindows.length
    let inFirstHalf = 0
    let total = 0
    for (let s = 0; s < 200; s++) {
      for (const i of sampleEvalWindows(w, Uint8Array.of(s, s >> 8), 10)) {
        total++
        if (w.split.evalWindows.indexOf(i) < n / 2) {
          inFirstHalf++
        }
      }
    }
    // 2000 draws, p = 1/2: 5 standard deviations is 112
    expect(inFirstHalf).to.be.within(total / 2 - 112, total / 2 + 112)
  })
})
