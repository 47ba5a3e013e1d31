import { expect } from 'aegir/chai'
import { SharedLineBudget } from '../../src/daemon/line-budget.ts'
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

  it('holds what arrives while paused, unsplit, and delivers it in order on resume, then a pending end', () => {
    const lines: string[] = []
    const splitter: LineSplitter = new LineSplitter({
      maxLineBytes: 100,
      onLine: l => {
        lines.push(l.toString())
        if (l.toString() === 'b') {
          splitter.pause()
        }
      },
      onOverflow: () => { throw new Error('no overflow expected') }
    })
    splitter.push(Buffer.from('a\nb\nc\nd'))
    expect(lines).to.deep.equal(['a', 'b'])
    expect(splitter.isPaused).to.equal(true)
    expect(splitter.heldBytes).to.equal(3)
    splitter.push(Buffer.from('e\nf'))
    splitter.end()
    expect(lines).to.deep.equal(['a', 'b'])
    expect(splitter.drained).to.equal(false)
    splitter.resume()
    expect(lines).to.deep.equal(['a', 'b', 'c', 'de', 'f'])
    expect(splitter.drained).to.equal(true)
    expect(splitter.heldBytes).to.equal(0)
  })

  it('reserves unfinished lines from a shared budget, gives the bytes back, and drops a line that does not fit', () => {
    const budget = new SharedLineBudget(10)
    const refused: string[] = []
    const make = (name: string): { splitter: LineSplitter, lines: string[] } => {
      const lines: string[] = []
      const splitter = new LineSplitter({
        maxLineBytes: 8,
        budget,
        onLine: l => { lines.push(l.toString()) },
        onOverflow: () => { refused.push(`${name}:overflow`) },
        onBudgetExceeded: () => { refused.push(`${name}:budget`) }
      })
      return { splitter, lines }
    }
    const a = make('a')
    const b = make('b')
    a.splitter.push(Buffer.from('123456'))
    expect(budget.used).to.equal(6)
    b.splitter.push(Buffer.from('1234'))
    expect(budget.used).to.equal(10)
    b.splitter.push(Buffer.from('5'))
    expect(refused).to.deep.equal(['b:budget'])
    expect(budget.used).to.equal(6)
    // b drops the rest of that line, then works again
    b.splitter.push(Buffer.from('678\nok\n'))
    expect(b.lines).to.deep.equal(['ok'])
    a.splitter.push(Buffer.from('78\n'))
    expect(a.lines).to.deep.equal(['12345678'])
    expect(budget.used).to.equal(0)
    expect(budget.peak).to.equal(10)
    a.splitter.push(Buffer.from('xyz'))
    a.splitter.clear()
    expect(budget.used).to.equal(0)
  })
})
