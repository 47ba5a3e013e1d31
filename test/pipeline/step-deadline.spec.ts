/**
 * The step deadline rule (src/pipeline/step-deadline.ts) on figures, no
 * clock involved: the ceiling when nothing is known, the announced speed
 * before the first step, the worker's own steps after it (the median of
 * their row-scaled bounds), the floor, the ceiling's scaling with rows.
 */
import { expect } from 'aegir/chai'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { StepDeadlines } from '../../src/pipeline/step-deadline.ts'

const INIT = { ceilingMs: 10_000, ceilingRows: 32, floorMs: 1000, multiplier: 4, window: 4 }

describe('step deadline', () => {
  it('is the ceiling for a worker with no steps and no announced speed; the ceiling grows per ceilingRows rows', () => {
    const d = new StepDeadlines(INIT)
    expect(d.expected('w', 1)).to.equal(undefined)
    expect(d.deadline('w', 1)).to.equal(10_000)
    expect(d.deadline('w', 32)).to.equal(10_000)
    expect(d.deadline('w', 33)).to.equal(20_000)
    expect(d.deadline('w', 100)).to.equal(40_000)
  })

  it('before the first step: multiplier x announced ms per row x rows, within floor and ceiling', () => {
    const d = new StepDeadlines(INIT)
    expect(d.deadline('w', 10, 50)).to.equal(2000)
    expect(d.deadline('w', 1, 50)).to.equal(1000)
    expect(d.deadline('w', 32, 500)).to.equal(10_000)
    // a non-positive or non-finite speed is no speed
    expect(d.deadline('w', 10, 0)).to.equal(10_000)
    expect(d.deadline('w', 10, Number.NaN)).to.equal(10_000)
  })

  it('after steps: the worker\'s own times win over its announced speed, and other workers\' do not count', () => {
    const d = new StepDeadlines(INIT)
    d.record('w', 1, 400)
    expect(d.expected('w', 1, 5)).to.equal(400)
    expect(d.deadline('w', 1, 5)).to.equal(1600)
    expect(d.deadline('other', 1)).to.equal(10_000)
  })

  it('scales a step\'s time by rows only upwards: a prefill bounds a decode step, a decode step scales to a prefill', () => {
    const d = new StepDeadlines(INIT)
    d.record('w', 20, 800)
    // one row takes no longer than twenty did
    expect(d.expected('w', 1)).to.equal(800)
    // forty rows take at most twice as long per row as twenty
    expect(d.expected('w', 40)).to.equal(1600)
    d.record('w', 1, 300)
    d.record('w', 1, 310)
    // median of [800, 300, 310] for one row; of [800, 1500, 1550] for five
    expect(d.expected('w', 1)).to.equal(310)
    expect(d.expected('w', 5)).to.equal(1500)
  })

  it('takes the median over the last `window` steps: one slow step neither stalls nor raises it', () => {
    const d = new StepDeadlines(INIT)
    for (const ms of [300, 300, 5000, 300]) {
      d.record('w', 1, ms)
    }
    expect(d.expected('w', 1)).to.equal(300)
    expect(d.deadline('w', 1)).to.equal(1200)
    // the window forgets the oldest: three 900s make the median 900
    for (const ms of [900, 900, 900]) {
      d.record('w', 1, ms)
    }
    expect(d.steps('w')).to.equal(4)
    expect(d.expected('w', 1)).to.equal(900)
  })

  it('never below the floor, never above the ceiling; both grow per ceilingRows rows', () => {
    const d = new StepDeadlines(INIT)
    d.record('fast', 1, 2)
    expect(d.deadline('fast', 1)).to.equal(1000)
    expect(d.deadline('fast', 64)).to.equal(2000)
    d.record('slow', 1, 4000)
    expect(d.deadline('slow', 1)).to.equal(10_000)
    // a floor as high as the ceiling: the fixed deadline of old
    const fixed = new StepDeadlines({ ...INIT, floorMs: 10_000 })
    fixed.record('fast', 1, 2)
    expect(fixed.deadline('fast', 1)).to.equal(10_000)
    expect(fixed.deadline('fast', 64)).to.equal(20_000)
  })

  it('ignores records that are no measurement', () => {
    const d = new StepDeadlines(INIT)
    d.record('w', 0, 100)
    d.record('w', 1, -1)
    d.record('w', 1, Number.POSITIVE_INFINITY)
    expect(d.steps('w')).to.equal(0)
  })

  it('refuses parameters that are not positive numbers', () => {
    for (const k of ['ceilingMs', 'ceilingRows', 'floorMs', 'multiplier', 'window'] as const) {
      expect(() => new StepDeadlines({ ...INIT, [k]: 0 })).to.throw().with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
    }
  })
})
