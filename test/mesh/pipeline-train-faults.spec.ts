/**
 * Faults in pipeline-parallel training (issue 12 item 4), in process: real
 * TrainStageServices on their own libp2p nodes on 127.0.0.1 (as
 * pipeline-train.spec.ts), each hop [0, 2) and [2, 4) with more than one
 * holder. A holder killed mid-job (its node stopped: its streams reset), a
 * holder answering finite garbage gradients (the service's test-only fault
 * injection: x1000 from step 3, or uniform random from step 1). Each time
 * the job ends with the losses and trained tensors of the undisturbed run,
 * bit for bit: the failed step is re-run from the driver's checkpoint on
 * another holder, and nothing of a garbage answer is ever applied.
 */
import { expect } from 'aegir/chai'
import { cutSequences, DataOrder } from '../../src/learning/train/data-order.ts'
import { runPipelineTraining } from '../../src/mesh/train/pipeline-train.ts'
import { trainFaultsFromEnv } from '../../src/mesh/train/train-fault-injection.ts'
import { TrainStageClient } from '../../src/mesh/train/train-stage-client.ts'
import { createTrainStageService } from '../../src/mesh/train/train-stage-service.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { TrainProtocolErrorCode } from '../../src/protocols/train-errors.ts'
import { TRAIN_PROTOCOL, TrainFrameType, TrainWireError } from '../../src/protocols/train.ts'
import { corpus, tinyWeights } from '../learning/train/helpers.ts'
import { startNode } from '../pipeline/helpers.ts'
import type { TrainMode } from '../../src/learning/train/stage.ts'
import type { PipelineTrainInit, PipelineTrainResult, TrainHop } from '../../src/mesh/train/pipeline-train.ts'
import type { TrainStageFaults } from '../../src/mesh/train/train-fault-injection.ts'
import type { TrainStageService } from '../../src/mesh/train/train-stage-service.ts'
import type { TrainHolder } from '../../src/mesh/train/train-stage-set.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StateFrame, TensorReplyFrame } from '../../src/protocols/train.ts'

const MODEL = 'qwen3-tiny-untied-f32'

interface Holder { name: string, node: BlyLibp2p, service: TrainStageService }

describe('mesh/train faults: a killed stage and garbage gradients are replaced, the job goes on as undisturbed', function () {
  this.timeout(180_000)
  let config: Qwen3Config
  let weights: Map<string, Float32Array>
  let driver: BlyLibp2p
  const cleanup: Array<() => Promise<void>> = []

  async function holder (name: string, faults?: TrainStageFaults): Promise<Holder> {
    const node = await startNode()
    const service = createTrainStageService({ libp2p: node, logger: silentLogger() }, {
      weights: async (model) => model === MODEL ? { config, weights } : null,
      ...(faults != null ? { faults } : {})
    })
    await service.start()
    cleanup.push(async () => { await service.stop(); await node.stop() })
    return { name, node, service }
  }

  function as (h: Holder): TrainHolder {
    return { id: h.name, connect: async () => driver.dialProtocol(h.node.getMultiaddrs(), TRAIN_PROTOCOL) }
  }

  function hop (start: number, end: number, first: Holder, ...others: Holder[]): TrainHop {
    return { start, end, ...as(first), alternatives: others.map(as) }
  }

  const MODE: TrainMode = { full: false, rank: 4, alpha: 4, targets: ['q', 'v'] }
  const STEPS = 6

  function job (id: string, route: TrainHop[], extra: Partial<PipelineTrainInit> = {}): PipelineTrainInit {
    return {
      job: id,
      model: MODEL,
      version: '',
      config,
      weights,
      route,
      data: new DataOrder(cutSequences(corpus(24, 32, 1), 8), 7),
      evalSequences: corpus(2, 8, 99),
      steps: STEPS,
      batch: 2,
      optimizer: { lr: 5e-3, warmup: 2 },
      mode: MODE,
      seed: 7,
      // no sampled audits: the audits counted here are the ones the rules call for
      audit: { rate: 0 },
      ...extra
    }
  }

  /** Same losses, eval losses and trained tensors, bit for bit. */
  function expectUndisturbed (got: PipelineTrainResult, want: PipelineTrainResult): void {
    expect(got.losses).to.deep.equal(want.losses)
    expect(got.evalLoss).to.deep.equal(want.evalLoss)
    expect([...got.candidate.keys()].sort()).to.deep.equal([...want.candidate.keys()].sort())
    for (const [name, w] of want.candidate) {
      expect(Buffer.from((got.candidate.get(name) as Float32Array).buffer).equals(Buffer.from(w.buffer)), name).to.equal(true)
    }
  }

  let a0: Holder
  let b0: Holder
  let a1: Holder
  let b1: Holder
  let c1: Holder
  let undisturbed: PipelineTrainResult

  before(async () => {
    await selectBackend('wasm')
    ;({ config, weights } = await tinyWeights())
    driver = await startNode()
    cleanup.push(async () => { await driver.stop() })
    a0 = await holder('a0')
    b0 = await holder('b0')
    a1 = await holder('a1')
    b1 = await holder('b1')
    c1 = await holder('c1')
    undisturbed = await runPipelineTraining(job('undisturbed', [hop(0, 2, a0), hop(2, 4, a1)]))
    expect(undisturbed.losses).to.have.length(STEPS)
    expect(undisturbed.faults.recoveries).to.equal(0)
    expect(undisturbed.evalLoss.after).to.be.lessThan(undisturbed.evalLoss.before)
  })

  after(async () => {
    for (const c of cleanup.reverse()) {
      await c()
    }
  })

  it('a holder killed mid-job: another holder of its layers takes the driver\'s checkpoint, the step runs again, the result is the undisturbed one', async () => {
    const victim = await holder('victim')
    const loadedBefore = b0.service.stats.statesLoaded
    let killedAt = 0
    const r = await runPipelineTraining(job('kill', [hop(0, 2, victim, b0), hop(2, 4, a1)], {
      onStep: (s) => {
        if (s.step === 3) {
          // its node goes down while the driver starts step 4: every stream to it resets
          killedAt = s.step
          void victim.node.stop()
        }
      }
    }))
    expect(killedAt).to.equal(3)
    expectUndisturbed(r, undisturbed)
    expect(r.faults.recoveries).to.be.at.least(1)
    expect(r.faults.replaced).to.be.at.least(1)
    // the holder that took over loaded the checkpoint (its first-step audit of the victim loaded one too)
    expect(b0.service.stats.statesLoaded - loadedBefore).to.be.at.least(2)
    expect(victim.service.stats.units).to.be.greaterThan(0)
  })

  it('a holder answering gradients x1000 from step 3: anomalous, audited by another holder, replaced; no garbage step applied', async () => {
    const liar = await holder('liar', { garbageFromStep: 3 })
    const r = await runPipelineTraining(job('x1000', [hop(0, 2, a0), hop(2, 4, liar, b1)]))
    expectUndisturbed(r, undisturbed)
    expect(r.faults.garbage).to.equal(1)
    expect(r.faults.replaced).to.be.at.least(1)
    expect(r.faults.recoveries).to.equal(1)
    // the first-step audit of the liar (honest then), and the audit at step 3
    expect(r.faults.audits).to.be.at.least(2)
  })

  it('a holder answering random gradients from its first step: its first-step audit disagrees, a third holder settles it, replaced', async () => {
    const liar = await holder('random', { garbageFromStep: 1, garbage: 'random' })
    const r = await runPipelineTraining(job('random', [hop(0, 2, a0), hop(2, 4, liar, b1, c1)]))
    expectUndisturbed(r, undisturbed)
    expect(r.faults.garbage).to.equal(1)
    expect(r.faults.recoveries).to.equal(1)
    expect(r.faults.audits).to.be.at.least(2)
  })

  it('two holders that disagree without an anomaly and no third: a typed error, nothing applied', async () => {
    const liar = await holder('random-2', { garbageFromStep: 1, garbage: 'random' })
    const err = await runPipelineTraining(job('undecided', [hop(0, 2, a0), hop(2, 4, liar, b1)])).then(() => null, (e: Error) => e)
    expect(err).to.have.property('code', TrainProtocolErrorCode.AUDIT_UNDECIDED)
    expect(err).to.have.property('stage', 1)
  })

  it('a hop whose every holder fails: ERR_PTRAIN_NO_HOLDER naming it, with the last failure as the cause', async () => {
    const victim = await holder('victim-2')
    const err = await runPipelineTraining(job('no-holder', [hop(0, 2, a0), hop(2, 4, victim)], {
      onStep: (s) => { if (s.step === 2) { void victim.node.stop() } }
    })).then(() => null, (e: Error) => e)
    expect(err).to.have.property('code', TrainProtocolErrorCode.NO_HOLDER)
    expect(err).to.have.property('stage', 1)
    expect((err as Error).cause).to.have.property('code').that.is.oneOf([TrainProtocolErrorCode.STREAM_CLOSED, TrainProtocolErrorCode.TIMEOUT])
  })

  it('LOAD_STATE is checked whole (BAD_REQUEST, NON_FINITE) and changes nothing when refused; FETCH_STATE only between steps', async () => {
    const c = new TrainStageClient(await driver.dialProtocol(a0.node.getMultiaddrs(), TRAIN_PROTOCOL), { stage: 0, timeoutMs: 30_000, maxFrameBytes: 1 << 22 })
    type State = StateFrame<typeof TrainFrameType.STATE>
    const refusal = async (p: Promise<unknown>): Promise<unknown> => p.then(() => null, (e: Error) => e)
    try {
      await c.request({ type: TrainFrameType.OPEN_JOB, job: 'state', model: MODEL, version: '', start: 0, end: 2, flags: 0, rank: 4, alpha: 4, targets: 0b101, seed: 3, batch: 1, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1, warmup: 0 }, TrainFrameType.OPENED)
      const s0 = await c.request<State>({ type: TrainFrameType.FETCH_STATE, job: 'state' }, TrainFrameType.STATE)
      expect(s0.step).to.equal(0)
      // q and v adapters (A and B) of 2 layers
      expect(s0.tensors.map(t => t.name)).to.have.length(8)
      const load = async (tensors: State['tensors'], step = 5): Promise<unknown> => refusal(c.request({ type: TrainFrameType.LOAD_STATE, job: 'state', step, tensors }, TrainFrameType.LOADED))
      expect(await load(s0.tensors.slice(1))).to.have.property('remoteCode', TrainWireError.BAD_REQUEST)
      expect(await load([{ ...s0.tensors[0], name: 'other' }, ...s0.tensors.slice(1)])).to.have.property('remoteCode', TrainWireError.BAD_REQUEST)
      const nan = Float32Array.from(s0.tensors[3].m)
      nan[0] = NaN
      expect(await load([...s0.tensors.slice(0, 3), { ...s0.tensors[3], m: nan }, ...s0.tensors.slice(4)])).to.have.property('remoteCode', TrainWireError.NON_FINITE)
      // nothing changed: the same state, the job still at step 1
      const s1 = await c.request<State>({ type: TrainFrameType.FETCH_STATE, job: 'state' }, TrainFrameType.STATE)
      expect(s1).to.deep.equal(s0)
      const ids = Uint32Array.of(1, 2, 3)
      const x = { rows: 3, cols: config.hiddenSize, data: new Float32Array(3 * config.hiddenSize).fill(0.25) }
      await c.request<TensorReplyFrame<typeof TrainFrameType.ACTIVATIONS>>({ type: TrainFrameType.FORWARD, job: 'state', step: 1, micro: 0, ids, x }, TrainFrameType.ACTIVATIONS)
      // inside a step: no FETCH_STATE
      expect(await refusal(c.request({ type: TrainFrameType.FETCH_STATE, job: 'state' }, TrainFrameType.STATE))).to.have.property('remoteCode', TrainWireError.BAD_REQUEST)
      // a LOAD_STATE drops the step's held micro-batch: the job is at the start of step 6, with the state given
      const changed = s0.tensors.map(t => ({ ...t, values: t.values.map(v => v + 0.5), v: t.v.map(() => 1e-6) }))
      await c.request({ type: TrainFrameType.LOAD_STATE, job: 'state', step: 5, tensors: changed }, TrainFrameType.LOADED)
      const s2 = await c.request<State>({ type: TrainFrameType.FETCH_STATE, job: 'state' }, TrainFrameType.STATE)
      expect(s2).to.deep.equal({ ...s0, step: 5, tensors: changed })
      expect(await refusal(c.request({ type: TrainFrameType.FORWARD, job: 'state', step: 1, micro: 0, ids, x }, TrainFrameType.ACTIVATIONS))).to.have.property('remoteCode', TrainWireError.BAD_REQUEST)
      await c.request({ type: TrainFrameType.FORWARD, job: 'state', step: 6, micro: 0, ids, x }, TrainFrameType.ACTIVATIONS)
    } finally {
      await c.close()
    }
  })

  it('the fault switches read from the environment (tests only): none set, none on', () => {
    expect(trainFaultsFromEnv({})).to.equal(undefined)
    expect(trainFaultsFromEnv({ BLYD_TEST_TRAIN_UNIT_DELAY_MS: 'x', BLYD_TEST_TRAIN_GARBAGE_ON_SIGNAL: 'SIGKILL' })).to.equal(undefined)
    expect(trainFaultsFromEnv({ BLYD_TEST_TRAIN_UNIT_DELAY_MS: '150' })).to.deep.equal({ unitDelayMs: 150 })
    expect(trainFaultsFromEnv({ BLYD_TEST_TRAIN_GARBAGE_FROM_STEP: '3', BLYD_TEST_TRAIN_GARBAGE: 'random' })).to.deep.equal({ garbageFromStep: 3, garbage: 'random' })
    expect(trainFaultsFromEnv({ BLYD_TEST_TRAIN_GARBAGE_ON_SIGNAL: 'SIGUSR2', BLYD_TEST_TRAIN_GARBAGE_SCALE: '10' })).to.deep.equal({ garbageOnSignal: 'SIGUSR2', garbage: 'scale', garbageScale: 10 })
  })
})
