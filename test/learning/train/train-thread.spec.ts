/**
 * A job in a training thread (train-thread.ts) ends with the same bits as
 * the same job on this thread: the losses, the eval losses and every
 * trained tensor; the thread runs at the lowest OS priority where the OS
 * says so, reports its units, honours the node's busy() flag between
 * units, and an abort ends it with ERR_TRAIN_ABORTED. Counters and bytes,
 * no clocks.
 */
import { expect } from 'aegir/chai'
import { cutSequences } from '../../../src/learning/train/data-order.ts'
import { TrainErrorCode } from '../../../src/learning/train/errors.ts'
import { runJob } from '../../../src/learning/train/job-run.ts'
import { MicroStepScheduler } from '../../../src/learning/train/scheduler.ts'
import { runJobInThread } from '../../../src/learning/train/train-thread.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { corpus, loraMode, tinyWeights } from './helpers.ts'
import type { JobData } from '../../../src/learning/train/job-run.ts'
import type { SchedulerCounters } from '../../../src/learning/train/train-protocol.ts'

describe('learning/train training thread', function () {
  this.timeout(300_000)
  let job: JobData

  before(async () => {
    await selectBackend('wasm')
    const { config, weights } = await tinyWeights()
    job = {
      config,
      weights,
      train: cutSequences(corpus(12, 16, 3), 16),
      held: corpus(2, 16, 99),
      mode: loraMode(4),
      seed: 7,
      steps: 4,
      batch: 2,
      lr: 5e-3,
      warmup: 2,
      evalEvery: 2,
      candidate: true
    }
  })

  it('ends bit-identical to the same job on this thread, at nice 19, its units counted', async () => {
    const here = await runJob(job, new MicroStepScheduler())
    const started: Array<{ tid: number | null, nice: number | null }> = []
    const units: SchedulerCounters[] = []
    const steps: number[] = []
    const evals: number[] = []
    const there = await runJobInThread(job, { onStep: r => steps.push(r.step), onEval: s => evals.push(s) }, {
      busy: () => false,
      onStarted: info => started.push(info),
      onUnit: c => units.push(c)
    })
    expect(there.losses).to.deep.equal(here.losses)
    expect(there.before).to.equal(here.before)
    expect(there.after).to.equal(here.after)
    expect(steps).to.deep.equal([1, 2, 3, 4])
    expect(evals).to.deep.equal([0, 2, 4])
    expect([...(there.candidate as Map<string, Float32Array>).keys()]).to.deep.equal([...(here.candidate as Map<string, Float32Array>).keys()])
    for (const [name, a] of here.candidate as Map<string, Float32Array>) {
      const b = there.candidate?.get(name) as Float32Array
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength)), name).to.equal(true)
    }
    expect(started).to.have.length(1)
    if (process.platform === 'linux') {
      expect(started[0].nice).to.equal(19)
      expect(started[0].tid).to.be.a('number')
    }
    // one counter report per unit after the first, counting up
    expect(units.length).to.be.greaterThan(10)
    expect(units.map(u => u.units)).to.deep.equal(units.map((_, i) => i + 1))
  })

  it('waits while the node is busy (at most maxDeferMs a unit) and an abort ends it with ERR_TRAIN_ABORTED', async () => {
    const units: SchedulerCounters[] = []
    const deferred = await runJobInThread({ ...job, steps: 1, evalEvery: 0, candidate: false }, {}, {
      busy: () => true,
      maxDeferMs: 1,
      onUnit: c => units.push(c)
    })
    expect(deferred.losses).to.have.length(1)
    // busy the whole time: every unit after the flag was first copied waited
    expect(units[units.length - 1].deferrals).to.be.at.least(units.length - 1)

    const controller = new AbortController()
    let seen = 0
    const err = await runJobInThread({ ...job, steps: 1000 }, {}, {
      onUnit: () => {
        if (++seen === 5) {
          controller.abort()
        }
      },
      signal: controller.signal
    }).catch(e => e)
    expect(err.code).to.equal(TrainErrorCode.ABORTED)
    expect(seen).to.be.lessThan(1000)
  })
})
