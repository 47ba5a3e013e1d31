/**
 * `blyd train` through stages: the one-process job's inputs (the model's
 * live weights, the dataset's train and eval sequences, the options with
 * their defaults: learning/train/local-train.ts trainJobInputs) run by the
 * pipeline driver over `route`, the eval loss measured through the stages
 * before and after, and with `propose` the fetched tensors proposed exactly
 * as the one-process job proposes them. Same JSON as `blyd train`.
 *
 * Ordering and durability: nothing is written to the chain unless `propose`
 * is set and every step ended; the stages' jobs are closed at the end.
 */
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { DataOrder } from '../../learning/train/data-order.ts'
import { proposeTrained, trainJobInputs } from '../../learning/train/local-train.ts'
import { chainTrainWeights } from './chain-train-weights.ts'
import { runPipelineTraining } from './pipeline-train.ts'
import type { TrainHop } from './pipeline-train.ts'
import type { LocalTrainInit } from '../../learning/train/local-train.ts'
import type { TrainResultJson } from '../../protocols/ipc-learning.ts'
import type { BlyLogger } from '../../protocols/logger.ts'

export interface StagesTrainInit extends LocalTrainInit {
  /** stages covering the model's layers in order */
  route: TrainHop[]
  /** the job id on the stages (default: 16 random bytes, hex) */
  job?: string
  /** the driver's recoveries and audit verdicts, at warn */
  log?: BlyLogger
}

export async function trainThroughStages (init: StagesTrainInit): Promise<TrainResultJson> {
  const inputs = await trainJobInputs(init)
  const { o, manifest, train, held, mode } = inputs
  const driver = await chainTrainWeights(init.store)(manifest.idHex, '', { start: 0, end: 0, head: false }) as NonNullable<Awaited<ReturnType<ReturnType<typeof chainTrainWeights>>>>
  const t0 = performance.now()
  let tokens = 0
  const r = await runPipelineTraining({
    job: init.job ?? randomBytes(16).toString('hex'),
    model: manifest.idHex,
    version: inputs.fold.live.id ?? '',
    config: manifest.qwen3,
    weights: driver.weights,
    route: init.route,
    data: new DataOrder(train, o.seed),
    evalSequences: held,
    evalEvery: o.evalEvery,
    ...(init.onEval != null ? { onEval: init.onEval } : {}),
    steps: o.steps,
    batch: o.batch,
    optimizer: { lr: o.lr, warmup: Math.min(o.warmup, o.steps) },
    mode,
    seed: o.seed,
    ...(init.log != null ? { log: init.log } : {}),
    onStep: s => {
      tokens += s.tokens
      init.onStep?.({ ...s, steps: o.steps, tokensPerSecond: tokens / Math.max(performance.now() - t0, 1e-3) * 1000 })
    }
  })
  const proposalId = init.propose === true ? await proposeTrained(init, inputs, r.candidate) : null
  return { steps: o.steps, losses: r.losses, evalLoss: r.evalLoss, tokensPerSecond: r.tokensPerSecond, proposalId }
}
