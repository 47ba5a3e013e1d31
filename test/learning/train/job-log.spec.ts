/**
 * The daemon's record of training jobs: states in order, a bounded loss
 * curve whose stride doubles, the last jobs kept, copies handed out.
 */
import { expect } from 'aegir/chai'
import { TrainJobLog } from '../../../src/learning/train/job-log.ts'

describe('training job log', () => {
  it('records a job from queued to done, with its losses and evals', () => {
    let t = 1000
    const log = new TrainJobLog({ now: () => t })
    const job = log.queue({ dataset: 'd', steps: 3 })
    expect(log.jobs()[0]).to.include({ id: 1, model: null, state: 'queued', step: 0, queuedAt: 1000, endedAt: null })
    log.evaluated(job, 0, 5)
    for (const [step, loss] of [[1, 4.5], [2, 4.25], [3, 4]]) {
      log.step(job, { step, loss, tokensPerSecond: 10 })
    }
    log.evaluated(job, 3, 3.5)
    t = 2000
    log.done(job, { steps: 3, losses: [4.5, 4.25, 4], evalLoss: { before: 5, after: 3.5 }, tokensPerSecond: 12, proposalId: 'ab' })
    expect(log.jobs()[0]).to.deep.equal({
      id: 1,
      model: null,
      dataset: 'd',
      state: 'done',
      steps: 3,
      step: 3,
      losses: [4.5, 4.25, 4],
      lossStride: 1,
      evalLosses: [{ step: 0, loss: 5 }, { step: 3, loss: 3.5 }],
      tokensPerSecond: 12,
      proposalId: 'ab',
      error: null,
      queuedAt: 1000,
      endedAt: 2000
    })
  })

  it('keeps a long curve bounded and evenly spaced: the stride doubles', () => {
    const log = new TrainJobLog({ maxPoints: 8 })
    const job = log.queue({ dataset: 'd', steps: 100 })
    for (let step = 1; step <= 100; step++) {
      log.step(job, { step, loss: step, tokensPerSecond: 1 })
    }
    const [j] = log.jobs()
    expect(j.losses.length).to.be.below(8)
    // every point is the loss of step (i + 1) x stride
    expect(j.losses).to.deep.equal(j.losses.map((_, i) => (i + 1) * j.lossStride))
    expect(j.lossStride).to.equal(16)
  })

  it('a failed job keeps its error; only the last maxJobs jobs are kept; jobs() hands out copies', () => {
    const log = new TrainJobLog({ maxJobs: 2 })
    log.failed(log.queue({ dataset: 'a', steps: 1 }), new Error('no such dataset'))
    const second = log.queue({ dataset: 'b', steps: 1 })
    log.queue({ dataset: 'c', steps: 1 })
    expect(log.jobs().map(j => j.dataset)).to.deep.equal(['b', 'c'])
    log.step(second, { step: 1, loss: 2, tokensPerSecond: 1 })
    const copy = log.jobs()[0]
    copy.losses.push(99)
    expect(log.jobs()[0].losses).to.deep.equal([2])
    const failing = new TrainJobLog()
    failing.failed(failing.queue({ dataset: 'x', steps: 1 }), new Error('boom'))
    expect(failing.jobs()[0]).to.include({ state: 'failed', error: 'boom' })
  })
})
