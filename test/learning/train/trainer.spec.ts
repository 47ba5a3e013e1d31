/**
 * The micro-step trainer on the tiny fixture: the loss falls on a tiny
 * corpus, and a job preempted more than 1,000 times by real inference (a
 * greedy generation session on the same model, one decode step between
 * training units) ends bitwise identical to the same job run without
 * interruption: the loss list and every trainable tensor, its gradient
 * accumulator and its AdamW moments, byte for byte.
 */
import { expect } from 'aegir/chai'
import { cutSequences, DataOrder } from '../../../src/learning/train/data-order.ts'
import { TrainJob } from '../../../src/learning/train/job.ts'
import { MicroStepScheduler } from '../../../src/learning/train/scheduler.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { LayerRange } from '../../../src/model/qwen3/layer-range.ts'
import { MapWeightSource } from '../../../src/model/weight-source.ts'
import { loadFixture } from '../../model/fixtures.ts'
import { corpus, loraMode, tinyWeights, wholeStage } from './helpers.ts'
import type { TrainMode } from '../../../src/learning/train/stage.ts'
import type { Qwen3Config } from '../../../src/model/qwen3/config.ts'

function bytesOf (a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength)
}

describe('learning/train micro-step trainer', function () {
  this.timeout(300_000)
  let config: Qwen3Config
  let weights: Map<string, Float32Array>

  before(async () => {
    await selectBackend('wasm')
    ;({ config, weights } = await tinyWeights())
  })

  async function train (mode: TrainMode, opts: { steps: number, batch: number, lr: number, seq: number, seed: number }, scheduler: MicroStepScheduler, evalSeqs?: Uint32Array[]): Promise<{ job: TrainJob, before: number, after: number }> {
    const stage = wholeStage(config, weights, mode, opts.seed)
    const data = new DataOrder(cutSequences(corpus(24, 32, 1), opts.seq), opts.seed)
    const job = new TrainJob({ stage, data, steps: opts.steps, batch: opts.batch, optimizer: { lr: opts.lr, warmup: 2 } })
    const before = { loss: NaN }
    const after = { loss: NaN }
    if (evalSeqs != null) {
      await scheduler.run(job.evalUnits(evalSeqs, before))
    }
    await scheduler.run(job.units())
    if (evalSeqs != null) {
      await scheduler.run(job.evalUnits(evalSeqs, after))
    }
    return { job, before: before.loss, after: after.loss }
  }

  it('the loss falls on a tiny corpus (LoRA)', async () => {
    const held = corpus(4, 32, 99)
    const { job, before, after } = await train(loraMode(4), { steps: 30, batch: 2, lr: 1e-2, seq: 32, seed: 5 }, new MicroStepScheduler(), held)
    try {
      expect(after, `held-out loss ${before} -> ${after}`).to.be.lessThan(before * 0.9)
      const first = job.losses.slice(0, 5).reduce((a, b) => a + b) / 5
      const last = job.losses.slice(-5).reduce((a, b) => a + b) / 5
      expect(last).to.be.lessThan(first * 0.9)
    } finally {
      job.stage.dispose()
    }
  })

  it('a run preempted >= 1,000 times by inference ends bitwise identical to an uninterrupted run', async () => {
    const opts = { steps: 28, batch: 4, lr: 5e-3, seq: 8, seed: 11 }
    const quiet = new MicroStepScheduler()
    const a = await train(loraMode(4), opts, quiet)

    // real inference on the same model: greedy decoding, one step per preemption
    const f = await loadFixture('untied-f32')
    const model = await LayerRange.load(f.config, new MapWeightSource(f.tensors), { start: 0, end: f.config.numLayers, embedding: true, head: true })
    const busy = new MicroStepScheduler()
    const flags = { stop: false, ended: false }
    let decoded = 0
    const generation = (async () => {
      let session = model.createSession()
      let token = 1
      while (!flags.stop) {
        if (session.length >= 200) {
          session.dispose()
          session = model.createSession()
        }
        const s = session
        const input = [token]
        const logits = await busy.inference(async () => model.nextLogits(s, input))
        token = logits.indexOf(Math.max(...logits))
        decoded++
      }
      session.dispose()
    })().finally(() => { flags.ended = true })
    let b: Awaited<ReturnType<typeof train>>
    try {
      b = await train(loraMode(4), opts, busy)
    } finally {
      flags.stop = true
      while (!flags.ended) {
        // let the generation's last queued step run
        await busy.run([][Symbol.iterator]())
        await new Promise(resolve => setImmediate(resolve))
      }
      await generation
      model.dispose()
    }
    try {
      expect(busy.preemptions).to.be.at.least(1000)
      expect(decoded).to.be.at.least(1000)
      expect(busy.units).to.equal(quiet.units)
      expect(quiet.preemptions).to.equal(0)
      expect(b.job.losses).to.deep.equal(a.job.losses)
      expect(b.job.losses).to.have.length(opts.steps)
      expect(a.job.stage.params.length).to.equal(b.job.stage.params.length)
      for (let i = 0; i < a.job.stage.params.length; i++) {
        const pa = a.job.stage.params[i]
        const pb = b.job.stage.params[i]
        expect(pb.name).to.equal(pa.name)
        expect(bytesOf(pb.values).equals(bytesOf(pa.values)), pa.name).to.equal(true)
        expect(bytesOf(pb.m).equals(bytesOf(pa.m)), pa.name).to.equal(true)
        expect(bytesOf(pb.v).equals(bytesOf(pa.v)), pa.name).to.equal(true)
      }
      // the adapters did move (an untrained run would compare equal trivially)
      expect(a.job.stage.params.some(p => p.name.endsWith('lora_b') && p.values.some(x => x !== 0))).to.equal(true)
    } finally {
      a.job.stage.dispose()
      b.job.stage.dispose()
    }
  })
})
