import { expect } from 'aegir/chai'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { SessionPriority, priorityOf } from '../../src/pipeline/priority.ts'
import { effectivePriority, runsBefore, stepKey } from '../../src/pipeline/step-order.ts'
import type { QueuedStep } from '../../src/pipeline/step-order.ts'

/** Runs the queue the way the stage does: repeatedly the step that runsBefore every other. */
function order (steps: QueuedStep[], agingMs: number): number[] {
  const left = [...steps]
  const out: number[] = []
  while (left.length > 0) {
    let best = 0
    for (let i = 1; i < left.length; i++) {
      if (runsBefore(left[i], left[best], agingMs)) {
        best = i
      }
    }
    out.push(left[best].ticket)
    left.splice(best, 1)
  }
  return out
}

describe('stage step order: priority with aging', () => {
  const I = SessionPriority.interactive
  const B = SessionPriority.batch
  const G = SessionPriority.background

  it('runs higher priority first, then by arrival', () => {
    const steps = [
      { priority: G, queuedAt: 0, ticket: 0 },
      { priority: B, queuedAt: 1, ticket: 1 },
      { priority: I, queuedAt: 2, ticket: 2 },
      { priority: B, queuedAt: 3, ticket: 3 },
      { priority: I, queuedAt: 4, ticket: 4 }
    ]
    expect(order(steps, 1000)).to.deep.equal([2, 4, 1, 3, 0])
  })

  it('a step that waited longer than agingMs per level it is behind runs first (no starvation)', () => {
    const old = { priority: B, queuedAt: 0, ticket: 0 }
    // an interactive step queued 1 aging period later: even, the older ticket wins
    expect(runsBefore(old, { priority: I, queuedAt: 1000, ticket: 1 }, 1000)).to.equal(true)
    // queued just before that: the interactive one still goes first
    expect(runsBefore(old, { priority: I, queuedAt: 999, ticket: 1 }, 1000)).to.equal(false)
    // background behind interactive: two levels = two aging periods
    const bg = { priority: G, queuedAt: 0, ticket: 0 }
    expect(runsBefore(bg, { priority: I, queuedAt: 1999, ticket: 1 }, 1000)).to.equal(false)
    expect(runsBefore(bg, { priority: I, queuedAt: 2001, ticket: 1 }, 1000)).to.equal(true)
  })

  it('a continuous stream of interactive steps lets a waiting batch step through within one aging period', () => {
    const agingMs = 100
    const batch = { priority: B, queuedAt: 0, ticket: 0 }
    // one interactive step arrives every 10 ms and each is computed at once, before the next arrives
    let ranAt = -1
    for (let t = 0, ticket = 1; t < 1000; t += 10, ticket++) {
      const interactive = { priority: I, queuedAt: t, ticket }
      if (runsBefore(batch, interactive, agingMs)) {
        ranAt = t
        break
      }
    }
    expect(ranAt).to.be.within(0, agingMs + 10)
    expect(ranAt).to.be.greaterThan(0)
  })

  it('effective priority rises with the wait and matches the key order', () => {
    const a = { priority: B, queuedAt: 0, ticket: 0 }
    const b = { priority: I, queuedAt: 50, ticket: 1 }
    expect(effectivePriority(a, 0, 100)).to.equal(B)
    expect(effectivePriority(a, 250, 100)).to.equal(B + 2.5)
    for (const now of [60, 120, 400]) {
      expect(effectivePriority(a, now, 100) > effectivePriority(b, now, 100)).to.equal(stepKey(a, 100) < stepKey(b, 100))
    }
  })

  it('priority names map to OPEN bytes; an unknown name is INVALID_ARGUMENT', () => {
    expect(priorityOf('interactive')).to.be.greaterThan(priorityOf('batch'))
    expect(priorityOf('batch')).to.be.greaterThan(priorityOf('background'))
    expect(() => priorityOf('urgent')).to.throw().with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
    expect(() => priorityOf('toString')).to.throw().with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
  })
})
