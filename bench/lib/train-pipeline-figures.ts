// The pipeline-parallel training figure (issue 12 item 6, second figure),
// shared by bench/train (its JSON's `pipeline`) and bench/train-pipeline:
// the same job (seed, data, hyper-parameters) in one process (TrainJob over a
// whole-model TrainStage) and through 4 stages over /bly/train/1.0.0, each a
// TrainStageService on its own libp2p node (TCP + Noise + Yamux on
// 127.0.0.1), all in this process: the same cores, so the ratio is what the
// protocol, the framing, the driver's relaying and its per-step checkpoints
// cost a job (no overlap of stages is possible on one thread). Random Qwen3
// weights (bench/lib/random-layer.ts for every layer; embedding and head
// random too), LoRA on every projection. One untimed warm-up step first.
// Also counts the steps whose losses agree within 1e-5 relative. The caller
// selects the backend first. The ratio is of the steps' rates (each side's
// optimizer steps, the pipeline's per-step checkpoints included);
// wholeJobRatio also counts each side's one-off set-up (building the
// TrainStages) and its trained tensors (candidate / FETCH_PARAMS).
import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { DataOrder } from '../../src/learning/train/data-order.ts'
import { TrainJob } from '../../src/learning/train/job.ts'
import { PROJECTIONS, TrainStage } from '../../src/learning/train/stage.ts'
import { runPipelineTraining } from '../../src/mesh/train/pipeline-train.ts'
import { createTrainStageService } from '../../src/mesh/train/train-stage-service.ts'
import { Prng } from '../../src/model/prng.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from '../../src/model/qwen3/plan.ts'
import { toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { createBlyLibp2p } from '../../src/net/libp2p-node.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { TRAIN_PROTOCOL } from '../../src/protocols/train.ts'
import { qwen3ShapeOfWidth, randomLayer } from './random-layer.ts'
import type { TrainMode } from '../../src/learning/train/stage.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'

/**
 * The job's shape when a bench is not told otherwise (bench/train-pipeline's
 * flags and bench/train's --pipeline-* flags): 20 steps, as 6 gave ratios
 * from 0.58 to 0.82 on a quiet box.
 */
export const PIPELINE_FIGURES_DEFAULTS = { layers: 4, hidden: 512, seq: 64, steps: 20, batch: 2 } as const

export interface PipelineFiguresInit {
  layers: number
  hidden: number
  seq: number
  steps: number
  batch: number
  rank: number
  say(line: string): void
}

export interface PipelineFigures {
  shape: { layers: number, hidden: number, seq: number, steps: number, batch: number, loraRank: number, stages: number }
  baseline: { oneProcessMs: number, oneProcessTokensPerSecond: number, oneProcessJobMs: number }
  pipeline: { ms: number, tokensPerSecond: number, jobMs: number, lossesWithin1e5: number }
  ratio: number
  wholeJobRatio: number
  goals: { pipelineAtLeast07OfOneProcess: boolean }
}

const VOCAB = 1024
const MODEL = 'bench-random'
const round = (x: number, d = 3): number => Number(x.toFixed(d))

export async function pipelineFigures (init: PipelineFiguresInit): Promise<PipelineFigures> {
  const { layers: LAYERS, hidden: H, seq: T, steps: STEPS, batch: BATCH, rank: RANK, say } = init
  const config = qwen3ShapeOfWidth(H, LAYERS, VOCAB)

  const layer = randomLayer(config)
  const weights = new Map<string, Float32Array>()
  for (let l = 0; l < LAYERS; l++) {
    for (const [name, t] of layer.tensors) {
      weights.set(name.replace('model.layers.0.', `model.layers.${l}.`), toFloat32(t))
    }
  }
  const rng = new Prng(11)
  const random = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => (rng.next() - 0.5) * scale)
  weights.set(EMBED_TOKENS, random(VOCAB * H, 0.2))
  weights.set(LM_HEAD, random(VOCAB * H, 0.2))
  weights.set(FINAL_NORM, new Float32Array(H).fill(1))
  const sequences = Array.from({ length: 4 * BATCH }, () => Uint32Array.from({ length: T }, () => Math.floor(rng.next() * VOCAB)))
  const mode: TrainMode = { full: false, rank: RANK, alpha: RANK, targets: PROJECTIONS }
  const SEED = 3
  const optimizer = { lr: 1e-3, warmup: 0 }
  const tokens = STEPS * BATCH * T
  say(`train-pipeline bench: ${LAYERS} layers hidden ${H}, T = ${T}, ${STEPS} steps x batch ${BATCH}, LoRA r=${RANK}, wasm on one thread`)

  // warm-up (wasm code, tfjs kernels), untimed: one step of the same job
  {
    const warm = new TrainStage({ config, weights, mode, seed: SEED, start: 0, end: LAYERS, embedding: true, head: true })
    const units = new TrainJob({ stage: warm, data: new DataOrder(sequences, SEED), steps: 1, batch: BATCH, optimizer }).units()
    while (units.next().done !== true) {
      // next unit
    }
    warm.dispose()
  }

  // one process
  const tJob = performance.now()
  const whole = new TrainStage({ config, weights, mode, seed: SEED, start: 0, end: LAYERS, embedding: true, head: true })
  const job = new TrainJob({ stage: whole, data: new DataOrder(sequences, SEED), steps: STEPS, batch: BATCH, optimizer })
  const t0 = performance.now()
  const units = job.units()
  while (units.next().done !== true) {
    // next unit
  }
  const localMs = performance.now() - t0
  whole.candidate()
  const localJobMs = performance.now() - tJob
  whole.dispose()
  say(`one process: steps ${localMs.toFixed(0)} ms, ${(tokens / localMs * 1000).toFixed(1)} tok/s; whole job (stage set up, steps, trained tensors) ${localJobMs.toFixed(0)} ms`)

  // 4 stages (or one per layer when fewer), each on its own libp2p node
  const nodes: BlyLibp2p[] = []
  const node = async (): Promise<BlyLibp2p> => {
    const n = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(n)
    return n
  }
  const stageCount = Math.min(4, LAYERS)
  const cuts = Array.from({ length: stageCount + 1 }, (_, i) => Math.round(i * LAYERS / stageCount))
  const driver = await node()
  const services = []
  for (let s = 0; s < stageCount; s++) {
    const service = createTrainStageService({ libp2p: await node(), logger: silentLogger() }, { weights: async (model) => model === MODEL ? { config, weights } : null })
    await service.start()
    services.push(service)
  }
  let pipelineMs = NaN
  let stepsMs = NaN
  let agree = 0
  try {
    const t1 = performance.now()
    const remote = await runPipelineTraining({
      job: 'bench',
      model: MODEL,
      version: '',
      config,
      weights,
      route: services.map((_, s) => ({ start: cuts[s], end: cuts[s + 1], connect: async () => driver.dialProtocol(nodes[s + 1].getMultiaddrs(), TRAIN_PROTOCOL) })),
      data: new DataOrder(sequences, SEED),
      steps: STEPS,
      batch: BATCH,
      optimizer,
      mode,
      seed: SEED
    })
    pipelineMs = performance.now() - t1
    stepsMs = tokens / remote.tokensPerSecond * 1000
    agree = remote.losses.filter((l, i) => Math.abs(l - job.losses[i]) <= 1e-5 * Math.abs(job.losses[i])).length
    say(`${stageCount} stages: steps ${stepsMs.toFixed(0)} ms, ${(tokens / stepsMs * 1000).toFixed(1)} tok/s; whole job (opening the stages, steps, fetching the trained tensors, closing) ${pipelineMs.toFixed(0)} ms; ${agree} of ${STEPS} step losses within 1e-5 of one process`)
  } finally {
    for (const s of services) {
      await s.stop()
    }
    await Promise.all(nodes.map(async n => n.stop()))
  }
  // the headline ratio: the steps' rate (what a long job sees); the whole job's adds the one-off
  // set-up (each stage builds its TrainStage: weight upload and transposes) and the trained tensors' fetch
  const ratio = localMs / stepsMs
  return {
    shape: { layers: LAYERS, hidden: H, seq: T, steps: STEPS, batch: BATCH, loraRank: RANK, stages: stageCount },
    baseline: { oneProcessMs: round(localMs, 1), oneProcessTokensPerSecond: round(tokens / localMs * 1000, 1), oneProcessJobMs: round(localJobMs, 1) },
    pipeline: { ms: round(stepsMs, 1), tokensPerSecond: round(tokens / stepsMs * 1000, 1), jobMs: round(pipelineMs, 1), lossesWithin1e5: agree },
    ratio: round(ratio),
    wholeJobRatio: round(localJobMs / pipelineMs),
    goals: { pipelineAtLeast07OfOneProcess: ratio >= 0.7 }
  }
}
