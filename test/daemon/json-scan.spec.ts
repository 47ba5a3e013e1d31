import { expect } from 'aegir/chai'
import { scanJson } from '../../src/daemon/json-scan.ts'

const scan = (text: string, maxDepth = 3, maxElements = 3): ReturnType<typeof scanJson> => scanJson(Buffer.from(text), maxDepth, maxElements)

describe('json scan', () => {
  it('finds nesting past the cap, counting arrays and objects alike', () => {
    expect(scan('[[[1]]]').tooDeep).to.equal(false)
    expect(scan('[[[[1]]]]').tooDeep).to.equal(true)
    expect(scan('{"a":{"b":{"c":1}}}').tooDeep).to.equal(false)
    expect(scan('{"a":{"b":{"c":{}}}}').tooDeep).to.equal(true)
    expect(scan('{"a":[{"b":[]}]}').tooDeep).to.equal(true)
  })

  it('stops at the first level past the cap without reading the rest', () => {
    const deep = Buffer.alloc(1_000_000, 0x5b)
    expect(scanJson(deep, 64, 100)).to.deep.include({ tooDeep: true })
  })

  it('ignores brackets and commas inside strings, escapes included', () => {
    expect(scan('{"a":"[[[[[[[[{{{{"}').tooDeep).to.equal(false)
    expect(scan('"\\"[[[[["').tooDeep).to.equal(false)
    expect(scan('["a\\\\", "[[[[", "b,c,d,e"]')).to.deep.equal({ tooDeep: false, topLevelElements: 3, tooManyElements: false })
  })

  it('counts the elements of a top-level array and stops past the cap', () => {
    expect(scan('[]')).to.deep.equal({ tooDeep: false, topLevelElements: 0, tooManyElements: false })
    expect(scan(' [ ] ')).to.deep.equal({ tooDeep: false, topLevelElements: 0, tooManyElements: false })
    expect(scan('[{"a":[1,2,3,4,5]}]').topLevelElements).to.equal(1)
    expect(scan('[1, {"x":[1,2]}, "3"]')).to.deep.equal({ tooDeep: false, topLevelElements: 3, tooManyElements: false })
    expect(scan('[1,2,3,4]')).to.deep.include({ tooManyElements: true, topLevelElements: 4 })
    expect(scan('{"a":[1,2,3,4,5,6]}')).to.deep.equal({ tooDeep: false, topLevelElements: 0, tooManyElements: false })
  })
})
