/**
 * The micro-step scheduler's rules: queued inference runs before the next
 * training unit, in order; a task queued while inference runs waits for
 * the next boundary (a job always gets a unit per round); units wait while
 * busy() holds, at most maxDeferMs each; an abort ends the job with
 * ERR_TRAIN_ABORTED; a task queued while a unit runs waits for that one
 * unit only (maxUnitsWaited); unit time and CPU are counted for every
 * unit. Counters, no clocks asserted.
 */
import { expect } from 'aegir/chai'
import { TrainErrorCode } from '../../../src/learning/train/errors.ts'
import { MicroStepScheduler } from '../../../src/learning/train/scheduler.ts'

function * job (log: string[], n: number): Generator<string, void, void> {
  for (let i = 0; i < n; i++) {
    log.push(`unit ${i}`)
    yield `unit ${i}`
  }
}

describe('learning/train micro-step scheduler', () => {
  it('runs queued inference first, in order, and a unit between rounds', async () => {
    const s = new MicroStepScheduler()
    const log: string[] = []
    const a = s.inference(() => { log.push('a'); return 1 })
    const b = s.inference(async () => {
      log.push('b')
      // queued while inference runs: waits for the next boundary
      void s.inference(() => { log.push('c') })
      return 2
    })
    await s.run(job(log, 2))
    expect(await a).to.equal(1)
    expect(await b).to.equal(2)
    expect(log).to.deep.equal(['a', 'b', 'unit 0', 'c', 'unit 1'])
    expect(s.preemptions).to.equal(3)
    expect(s.units).to.equal(2)
  })

  it('an inference task that throws rejects its caller only', async () => {
    const s = new MicroStepScheduler()
    const log: string[] = []
    // the caller's handler is attached at once, as a caller awaiting it has one: tfjs-wasm's
    // Emscripten module turns an unhandled rejection into an uncaught exception in this process
    const bad = expect(s.inference(() => { throw new Error('boom') })).to.eventually.be.rejectedWith('boom')
    await s.run(job(log, 1))
    await bad
    expect(log).to.deep.equal(['unit 0'])
  })

  it('units wait while busy() holds, at most maxDeferMs each', async () => {
    let polls = 0
    const s = new MicroStepScheduler({ busy: () => polls++ < 5, busyPollMs: 1, maxDeferMs: 10_000 })
    const log: string[] = []
    await s.run(job(log, 3))
    expect(log).to.have.length(3)
    expect(s.deferrals).to.equal(1)
    const stuck = new MicroStepScheduler({ busy: () => true, busyPollMs: 1, maxDeferMs: 5 })
    await stuck.run(job(log, 2))
    expect(stuck.units).to.equal(2)
    expect(stuck.deferrals).to.equal(3)
  })

  it('an abort ends the job with ERR_TRAIN_ABORTED', async () => {
    const s = new MicroStepScheduler()
    const controller = new AbortController()
    const log: string[] = []
    const gen = (function * () {
      yield * job(log, 2)
      controller.abort()
      yield * job(log, 5)
    })()
    const err = await s.run(gen, controller.signal).catch(e => e)
    expect(err.code).to.equal(TrainErrorCode.ABORTED)
    expect(log).to.have.length(3)
  })

  it('an inference task queued during a unit waits for that unit only, and units are timed', async () => {
    const s = new MicroStepScheduler()
    const log: string[] = []
    const ran: number[] = []
    // inference queued from inside units (as a request arriving mid-unit is queued right after it)
    const gen = (function * () {
      for (let i = 0; i < 20; i++) {
        log.push(`unit ${i}`)
        if (i % 3 === 0) {
          void s.inference(() => { ran.push(i) })
        }
        yield `unit ${i}`
      }
    })()
    const before = s.inference(() => 'first')
    await s.run(gen)
    expect(await before).to.equal('first')
    expect(ran).to.deep.equal([0, 3, 6, 9, 12, 15, 18])
    // each ran at the boundary right after its unit
    expect(s.maxUnitsWaited).to.equal(1)
    expect(s.preemptions).to.equal(8)
    expect(s.units).to.equal(20)
    expect(s.maxUnitMs).to.be.at.most(s.unitMs)
    expect(s.unitCpuMs).to.be.at.least(0)

    const quiet = new MicroStepScheduler()
    void quiet.inference(() => {})
    await quiet.run(job([], 3))
    expect(quiet.maxUnitsWaited).to.equal(0)
  })
})
