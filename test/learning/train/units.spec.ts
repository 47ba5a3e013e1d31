/**
 * The trainer's work units stay one layer x one sequence: an eval is cut
 * into a unit per layer's forward and one for the head (sequenceLossUnits)
 * with the same loss as sequenceLoss, bit for bit; the optimizer update is
 * cut into runs of at most OPTIMIZER_UNIT_ELEMENTS elements (whole
 * tensors, in order) whose updates are bit-identical to one update of all.
 * Counts and bytes, no clocks.
 */
import { expect } from 'aegir/chai'
import { adamwStep, ADAMW_DEFAULTS, sumSquares } from '../../../src/learning/train/adamw.ts'
import { OPTIMIZER_UNIT_ELEMENTS } from '../../../src/learning/train/constants.ts'
import { cutSequences, DataOrder } from '../../../src/learning/train/data-order.ts'
import { optimizerChunks, TrainJob } from '../../../src/learning/train/job.ts'
import { sequenceLoss } from '../../../src/learning/train/micro-batch.ts'
import { TrainParam } from '../../../src/learning/train/param.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { Prng } from '../../../src/model/prng.ts'
import { corpus, FULL, loraMode, tinyWeights, wholeStage } from './helpers.ts'
import type { Qwen3Config } from '../../../src/model/qwen3/config.ts'

function randomParam (name: string, n: number, rng: Prng): TrainParam {
  const values = Float32Array.from({ length: n }, () => rng.next() - 0.5)
  const p = new TrainParam(name, [n], values, true)
  for (let i = 0; i < n; i++) {
    p.grad[i] = rng.next() - 0.5
  }
  return p
}

function copyParam (p: TrainParam): TrainParam {
  const c = new TrainParam(p.name, [p.values.length], Float32Array.from(p.values), p.decay)
  c.grad.set(p.grad)
  c.m.set(p.m)
  c.v.set(p.v)
  return c
}

describe('learning/train work units', function () {
  this.timeout(120_000)
  let config: Qwen3Config
  let weights: Map<string, Float32Array>

  before(async () => {
    await selectBackend('wasm')
    ;({ config, weights } = await tinyWeights())
  })

  it('an eval runs a unit per layer and one for the head per sequence, with sequenceLoss\'s loss', () => {
    const stage = wholeStage(config, weights, loraMode(4), 3)
    try {
      const job = new TrainJob({ stage, data: new DataOrder(cutSequences(corpus(4, 16, 2), 16), 1), steps: 1, batch: 1, optimizer: { lr: 1e-3 } })
      const seqs = corpus(3, 16, 9)
      const out = { loss: NaN }
      const units = [...job.evalUnits(seqs, out)]
      expect(units).to.have.length(seqs.length * (config.numLayers + 1))
      expect(units.slice(0, config.numLayers + 1)).to.deep.equal([...Array.from({ length: config.numLayers }, (_, l) => `eval forward ${l}`), 'eval head'])
      const mean = seqs.map(ids => sequenceLoss(stage, ids)).reduce((a, b) => a + b) / seqs.length
      expect(out.loss).to.equal(mean)
      expect(Number.isFinite(out.loss)).to.equal(true)
    } finally {
      stage.dispose()
    }
  })

  it('optimizer chunks: whole tensors in order, at most the bound each unless one tensor is bigger', () => {
    const rng = new Prng(4)
    const sizes = [10, 30, 25, 100, 5, 5, 60, 1]
    const params = sizes.map((n, i) => randomParam(`p${i}`, n, rng))
    const chunks = optimizerChunks(params, 40)
    expect(chunks.flat()).to.deep.equal(params)
    expect(chunks.map(c => c.map(p => p.values.length))).to.deep.equal([[10, 30], [25], [100], [5, 5], [60], [1]])
    for (const c of chunks) {
      const n = c.reduce((a, p) => a + p.values.length, 0)
      expect(c.length === 1 || n <= 40).to.equal(true)
    }
    expect(optimizerChunks([])).to.deep.equal([])
    expect(OPTIMIZER_UNIT_ELEMENTS).to.be.a('number')
  })

  it('an update in chunks is bit-identical to one update of every tensor', () => {
    const rng = new Prng(5)
    const params = [300, 1200, 50, 700, 700].map((n, i) => randomParam(`p${i}`, n, rng))
    const whole = params.map(copyParam)
    const opts = { ...ADAMW_DEFAULTS, lr: 1e-2, clip: 0.5 }
    for (let step = 1; step <= 3; step++) {
      const squares = sumSquares(params)
      const chunks = optimizerChunks(params, 1000)
      expect(chunks.length).to.be.greaterThan(2)
      for (const c of chunks) {
        adamwStep(c, opts, step, squares)
      }
      adamwStep(whole, opts, step, sumSquares(whole))
      for (const [i, p] of params.entries()) {
        expect(Buffer.from(p.values.buffer).equals(Buffer.from(whole[i].values.buffer))).to.equal(true)
        expect(Buffer.from(p.m.buffer).equals(Buffer.from(whole[i].m.buffer))).to.equal(true)
        expect(Buffer.from(p.v.buffer).equals(Buffer.from(whole[i].v.buffer))).to.equal(true)
        p.grad.set(Float32Array.from({ length: p.grad.length }, () => rng.next() - 0.5))
        whole[i].grad.set(p.grad)
      }
    }
  })

  it('a --full job cuts its update into parts and ends bit-identical to a job updating in one unit', () => {
    const run = (bound: number | undefined): { units: string[], stage: ReturnType<typeof wholeStage>, losses: number[] } => {
      const stage = wholeStage(config, weights, FULL, 3)
      const job = new TrainJob({ stage, data: new DataOrder(cutSequences(corpus(4, 16, 2), 16), 1), steps: 2, batch: 1, optimizer: { lr: 1e-3 }, ...(bound != null ? { optimizerUnitElements: bound } : {}) })
      return { units: [...job.units()], stage, losses: job.losses }
    }
    const cut = run(4096)
    const one = run(Infinity)
    try {
      const parts = optimizerChunks(cut.stage.params, 4096).length
      expect(parts).to.be.greaterThan(10)
      expect(cut.units.filter(u => u === 'optimizer part')).to.have.length(2 * (parts - 1))
      expect(one.units.filter(u => u === 'optimizer part')).to.have.length(0)
      expect(cut.losses).to.deep.equal(one.losses)
      for (const [i, p] of cut.stage.params.entries()) {
        expect(Buffer.from(p.values.buffer).equals(Buffer.from(one.stage.params[i].values.buffer)), p.name).to.equal(true)
        expect(Buffer.from(p.v.buffer).equals(Buffer.from(one.stage.params[i].v.buffer)), p.name).to.equal(true)
      }
    } finally {
      cut.stage.dispose()
      one.stage.dispose()
    }
  })

  it('a bad optimizerUnitElements is refused with ERR_TRAIN_OPTION', () => {
    const stage = wholeStage(config, weights, loraMode(2), 3)
    try {
      expect(() => new TrainJob({ stage, data: new DataOrder(cutSequences(corpus(4, 16, 2), 16), 1), steps: 1, batch: 1, optimizer: { lr: 1e-3 }, optimizerUnitElements: 0 }))
        .to.throw().with.property('code', 'ERR_TRAIN_OPTION')
    } finally {
      stage.dispose()
    }
  })
})
