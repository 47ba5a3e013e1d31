import { expect } from 'aegir/chai'
import { scanJson } from '../../src/daemon/json-scan.ts'
import type { JsonScan } from '../../src/daemon/json-scan.ts'

const scan = (text: string, maxDepth = 3, maxBatch = 3, maxValues = 100): JsonScan => scanJson(Buffer.from(text), { maxDepth, maxBatch, maxValues })

describe('json scan', () => {
  it('finds nesting past the cap, counting arrays and objects alike', () => {
    expect(scan('[[[1]]]').refused).to.equal(undefined)
    expect(scan('[[[[1]]]]').refused).to.equal('depth')
    expect(scan('{"a":{"b":{"c":1}}}').refused).to.equal(undefined)
    expect(scan('{"a":{"b":{"c":{}}}}').refused).to.equal('depth')
    expect(scan('{"a":[{"b":[]}]}').refused).to.equal('depth')
  })

  it('stops at the first level past the cap without reading the rest', () => {
    const deep = Buffer.alloc(1_000_000, 0x5b)
    expect(scanJson(deep, { maxDepth: 64, maxBatch: 100, maxValues: 1000 }).refused).to.equal('depth')
  })

  it('counts values as commas plus arrays and objects, and stops past the cap', () => {
    expect(scan(`{"a":[${'1,'.repeat(98)}1]}`).refused).to.equal(undefined)
    expect(scan(`{"a":[${'1,'.repeat(99)}1]}`).refused).to.equal('values')
    expect(scan(`{"a":[${'{},'.repeat(49)}{}]}`).refused).to.equal('values')
    expect(scan(`{"a":"${'{},'.repeat(1000)}"}`).refused).to.equal(undefined)
  })

  it('ignores brackets and commas inside strings, escapes included', () => {
    expect(scan('{"a":"[[[[[[[[{{{{"}').refused).to.equal(undefined)
    expect(scan('"\\"[[[[["').refused).to.equal(undefined)
    expect(scan('["a\\\\", "[[[[", "b,c,d,e"]')).to.deep.equal({ refused: undefined, topLevelElements: 3, balanced: true })
  })

  it('counts the elements of a top-level array and stops past the batch cap', () => {
    expect(scan('[]')).to.deep.equal({ refused: undefined, topLevelElements: 0, balanced: true })
    expect(scan(' [ ] ')).to.deep.equal({ refused: undefined, topLevelElements: 0, balanced: true })
    expect(scan('[{"a":[1,2,3,4,5]}]').topLevelElements).to.equal(1)
    expect(scan('[1, {"x":[1,2]}, "3"]')).to.deep.equal({ refused: undefined, topLevelElements: 3, balanced: true })
    expect(scan('[1,2,3,4]')).to.deep.equal({ refused: 'batch', topLevelElements: 4, balanced: false })
    expect(scan('{"a":[1,2,3,4,5,6]}')).to.deep.equal({ refused: undefined, topLevelElements: 0, balanced: true })
  })

  it('says whether every string, array and object opened was closed', () => {
    for (const text of ['42', '"x"', '{"a":[1,{"b":"]"}]}', '"a\\\\"', '"a\\\\\\"b"', '"\\""']) {
      expect(scan(text, 8).balanced, text).to.equal(true)
    }
    for (const text of ['{"a":"xx', '{"a":1', '{"a":1}}', ']', '"\\"', '"a\\\\\\"']) {
      expect(scan(text, 8).balanced, text).to.equal(false)
    }
    // an unterminated string of 15 MiB is found out without being parsed
    const tail = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"'), Buffer.alloc(15 * 1024 * 1024, 0x61)])
    expect(scanJson(tail, { maxDepth: 64, maxValues: 1000, maxBatch: 100 })).to.deep.equal({ refused: undefined, topLevelElements: 0, balanced: false })
  })
})
