import { expect } from 'aegir/chai'
import { LineSplitter } from '../../src/daemon/line-splitter.ts'

function collect (max: number): { splitter: LineSplitter, lines: string[], overflows: number[] } {
  const lines: string[] = []
  const overflows: number[] = []
  const splitter = new LineSplitter({
    maxLineBytes: max,
    onLine: l => { lines.push(l.toString()) },
    onOverflow: () => { overflows.push(lines.length) }
  })
  return { splitter, lines, overflows }
}

describe('line splitter', () => {
  it('splits lines across chunk boundaries and strips CR', () => {
    const { splitter, lines } = collect(100)
    splitter.push(Buffer.from('ab'))
    splitter.push(Buffer.from('c\r\nde\n\nf'))
    splitter.push(Buffer.from('g\n'))
    splitter.push(Buffer.from('tail'))
    splitter.end()
    expect(lines).to.deep.equal(['abc', 'de', 'fg', 'tail'])
  })

  it('reports an overlong line once, drops it without holding it, and resumes after the newline', () => {
    const { splitter, lines, overflows } = collect(10)
    splitter.push(Buffer.from('ok\n0123456'))
    for (let i = 0; i < 1000; i++) {
      splitter.push(Buffer.alloc(1000, 0x61))
      expect(splitter.buffered).to.be.at.most(10)
    }
    splitter.push(Buffer.from('xyz\nnext\n'))
    expect(lines).to.deep.equal(['ok', 'next'])
    expect(overflows).to.deep.equal([1])
  })

  it('rejects an overlong line that arrives whole in one chunk', () => {
    const { splitter, lines, overflows } = collect(4)
    splitter.push(Buffer.from('abcdefgh\nabcd\n'))
    expect(lines).to.deep.equal(['abcd'])
    expect(overflows).to.deep.equal([0])
  })
})
