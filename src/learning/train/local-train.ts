/**
 * `blyd train` in one process: the model's live weights (chain A's fold,
 * the imported units plus every accepted delta), the dataset's train
 * windows, a whole-model TrainStage, the job run by a MicroStepScheduler
 * (job-run.ts; the daemon's inference would queue on it), on this thread
 * or with `thread` in a training thread (train-thread.ts), the eval loss on the
 * dataset's first eval windows before, every `evalEvery` steps and after,
 * and with `propose` the trained tensors proposed through the
 * Proof-of-Learning path exactly as `blyd delta propose` does
 * (delta-propose.ts proposeWeights: lowrank codec for LoRA, f32 for --full).
 *
 * Ordering and durability: nothing is written to the chain unless
 * `propose` is set and the whole job ended; then the Delta blocks and the
 * Proposal as delta-propose.ts writes them. Memory: the live weights in f32
 * (4 bytes per parameter), the frozen weights in tfjs twice (W and W^T) and
 * per trainable tensor five f32 arrays (values, gradient, two moments,
 * plus its tfjs copy); with `thread`, the live f32 weights once more (the
 * thread's copy).
 */
import { loadModelManifest } from '../../model/chain-loader.ts'
import { findDataset, loadDatasetWindows } from '../dataset-store.ts'
import { windowTokens } from '../dataset-windows.ts'
import { proposeWeights } from '../delta-propose.ts'
import { foldOf, pickModel, requireGenesis } from '../pol-models.ts'
import { versionWeights } from '../version-weights.ts'
import { TRAIN_DEFAULTS } from './constants.ts'
import { cutSequences } from './data-order.ts'
import { TrainError, TrainErrorCode } from './errors.ts'
import { runJob } from './job-run.ts'
import { MicroStepScheduler } from './scheduler.ts'
import { PROJECTIONS } from './stage.ts'
import { runJobInThread } from './train-thread.ts'
import type { JobData } from './job-run.ts'
import type { StepReport } from './job.ts'
import type { TrainMode } from './stage.ts'
import type { TrainThreadOptions } from './train-thread.ts'
import type { BlockSigner, ChainStoreApi } from '../../chain/types.ts'
import type { ModelManifest } from '../../model/chain-loader.ts'
import type { DeltaCodec } from '../../protocols/delta.ts'
import type { TrainParams, TrainResultJson } from '../../protocols/ipc-learning.ts'
import type { ModelFold } from '../fold/types.ts'

/**
 * The job's options are `train`'s IPC params (protocols/ipc-learning.ts:
 * seq = tokens per training sequence, windows cut into pieces of at most
 * this; loraRank ignored with full; evalEvery 0 = before and after only).
 */
export interface LocalTrainInit extends Omit<TrainParams, 'via'> {
  store: ChainStoreApi
  signer: BlockSigner
  /** eval windows measured (the dataset's first ones) */
  evalWindows?: number
  /** --full: the delta codec (f32 or int8; default f32) */
  codec?: DeltaCodec
  /** the main-thread scheduler (default a new one); unused with `thread` */
  scheduler?: MicroStepScheduler
  /**
   * Run the job in a training thread below the node's OS priority
   * (train-thread.ts) instead of on this thread: the same result bit for
   * bit; inference is no longer held behind a unit in flight.
   */
  thread?: Omit<TrainThreadOptions, 'signal'>
  onStep?(r: StepReport & { steps: number, tokensPerSecond: number }): void
  onEval?(step: number, loss: number): void
  signal?: AbortSignal
}

function check (ok: boolean, message: string): void {
  if (!ok) {
    throw new TrainError(TrainErrorCode.OPTION, message)
  }
}

/** What a job on the chain's live weights starts from: the options resolved, the model, its data. */
export interface TrainJobInputs {
  o: typeof TRAIN_DEFAULTS & LocalTrainInit
  manifest: ModelManifest
  fold: ModelFold
  /** the dataset's train windows cut into sequences of at most `seq` tokens */
  train: Uint32Array[]
  /** the eval sequences (the dataset's first `evalWindows` eval windows) */
  held: Uint32Array[]
  full: boolean
  mode: TrainMode
}

/** Checks the options and reads the model and the dataset of a job (the one-process trainer's and the pipeline driver's). */
export async function trainJobInputs (init: LocalTrainInit): Promise<TrainJobInputs> {
  const o = { ...TRAIN_DEFAULTS, ...Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined)) } as typeof TRAIN_DEFAULTS & LocalTrainInit
  check(Number.isSafeInteger(o.steps) && o.steps >= 1, `--steps must be a positive integer (got ${o.steps})`)
  check(Number.isFinite(o.lr) && o.lr > 0, `--lr must be a positive number (got ${o.lr})`)
  check(Number.isSafeInteger(o.batch) && o.batch >= 1, `--batch must be a positive integer (got ${o.batch})`)
  check(Number.isSafeInteger(o.seq) && o.seq >= 2, `--seq must be an integer >= 2 (got ${o.seq})`)
  check(Number.isSafeInteger(o.loraRank) && o.loraRank >= 1 && o.loraRank <= 0xffff, `--lora-rank must be an integer from 1 to 65535 (got ${o.loraRank})`)
  check(Number.isSafeInteger(o.seed) && o.seed >= 0, `--seed must be a non-negative integer (got ${o.seed})`)
  check(Number.isSafeInteger(o.evalEvery) && o.evalEvery >= 0, `--eval-every must be a non-negative integer (got ${o.evalEvery})`)
  const { store } = init
  const modelId = await pickModel(store, init.model)
  const manifest = await loadModelManifest(store, modelId)
  const fold = await foldOf(store, modelId)
  requireGenesis(fold)
  const datasetBlock = await findDataset(store, init.dataset)
  const data = await loadDatasetWindows(store, datasetBlock, manifest)
  const train = cutSequences(Array.from(data.split.trainWindows, w => windowTokens(data, w)), o.seq)
  const held = cutSequences(Array.from(data.split.evalWindows.subarray(0, o.evalWindows), w => windowTokens(data, w)), o.seq)
  if (held.length === 0) {
    throw new TrainError(TrainErrorCode.DATA, `dataset ${init.dataset} has no eval window to measure the eval loss on`)
  }
  const full = o.full === true
  return { o, manifest, fold, train, held, full, mode: { full, rank: o.loraRank, alpha: o.loraRank * o.alphaPerRank, targets: PROJECTIONS } }
}

/** Proposes a job's trained tensors through the Proof-of-Learning path (as `blyd delta propose` does): its proposal id. */
export async function proposeTrained (init: LocalTrainInit, inputs: TrainJobInputs, candidate: Map<string, Float32Array>): Promise<string> {
  const { o, full, manifest } = inputs
  const codec: DeltaCodec = full ? (init.codec ?? 'f32') : 'lowrank'
  const r = await proposeWeights({
    store: init.store,
    signer: init.signer,
    model: manifest.idHex,
    dataset: init.dataset,
    codec,
    ...(full ? {} : { rank: o.loraRank }),
    signal: init.signal
  }, candidate, `the trained weights (${full ? 'full' : `LoRA rank ${o.loraRank}`}, ${o.steps} steps)`)
  return r.proposalId
}

/** Runs a training job on the local chain's live weights (see the file comment). */
export async function trainLocal (init: LocalTrainInit): Promise<TrainResultJson> {
  const inputs = await trainJobInputs(init)
  const { o, manifest, fold, train, held, mode } = inputs
  const { store } = init
  const weights = new Map<string, Float32Array>()
  for (const u of await versionWeights(store, manifest, fold.live)) {
    for (const [name, t] of u.tensors) {
      weights.set(name, t.values)
    }
  }
  const data: JobData = {
    config: manifest.qwen3,
    weights,
    train,
    held,
    mode,
    seed: o.seed,
    steps: o.steps,
    batch: o.batch,
    lr: o.lr,
    warmup: Math.min(o.warmup, o.steps),
    evalEvery: o.evalEvery,
    candidate: init.propose === true
  }
  const hooks = { onStep: init.onStep, onEval: init.onEval }
  const outcome = init.thread != null
    ? await runJobInThread(data, hooks, { ...init.thread, signal: init.signal })
    : await runJob(data, init.scheduler ?? new MicroStepScheduler(), hooks, init.signal)
  let proposalId: string | null = null
  if (init.propose === true && outcome.candidate != null) {
    proposalId = await proposeTrained(init, inputs, outcome.candidate)
  }
  return {
    steps: o.steps,
    losses: outcome.losses,
    evalLoss: { before: outcome.before, after: outcome.after },
    tokensPerSecond: outcome.tokensPerSecond,
    proposalId
  }
}
