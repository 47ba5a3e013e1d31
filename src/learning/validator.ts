/**
 * One validator's measurement of one proposal, and the Attestation it
 * publishes (protocols/attestation.md). In order:
 * 1. the structural checks (validator-checks.ts): stale, oversize,
 * malformed, non-finite, model, shape, duplicate; a failure is a
 * reject with that reason and no measurements;
 * 2. the seed: seedSig = Ed25519_sign(key, "bly/pol-seed/v1" || proposalId),
 * and the sample: sampleWindows eval windows of the proposal's dataset,
 * then of each regression dataset of the params, chosen by seedSig;
 * 3. base = the live version's weights (version-weights.ts), candidate =
 * base + the proposal's decoded deltas (a weight that overflows f32:
 * `non-finite`); per-window mean cross-entropy of both on the samples,
 * in micro-nats (a candidate whose loss is not finite: `non-finite`);
 * 4. the rule (pol/rule.ts) on its own numbers: `ok` or the reason.
 *
 * Memory: the live weights in f32 (4 bytes per parameter), the changed
 * units' candidate tensors, and ONE whole model in tfjs at a time: the base
 * is measured and disposed before the candidate is loaded. For a model of P
 * parameters that is about 8P bytes at peak, plus 4 bytes per changed
 * parameter (the tiny fixture: ~2 MB; an 8B model: ~64 GB, so a validator
 * of a large model needs that much memory or a future sharded path).
 *
 * Every payload the work reads must be stored locally (the service fetches
 * them first); one that is not raises LearningError PAYLOAD_MISSING or
 * DatasetError PAYLOAD_MISSING, which the caller retries later.
 */
import { performance } from 'node:perf_hooks'
import { loadModelManifest } from '../model/chain-loader.ts'
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { BlydError } from '../protocols/errors.ts'
import { fromHex } from '../protocols/hex.ts'
import { Reason } from '../protocols/learning-blocks.ts'
import { loadDatasetWindows } from './dataset-store.ts'
import { applyDelta } from './delta-apply.ts'
import { WeightDeltaErrorCode } from './delta-errors.ts'
import { DatasetError, DatasetErrorCode } from './errors.ts'
import { attestationBlock } from './new-blocks.ts'
import { measureWindows } from './pol/measure.ts'
import { rule, toMicroNats } from './pol/rule.ts'
import { sampleFor, signSeed } from './pol/seed.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import { DeltaBodyIndex, checkBase, checkDeltas, checkDuplicate, checkSizes } from './validator-checks.ts'
import { loadWholeModel, versionWeights } from './version-weights.ts'
import type { DatasetWindows } from './dataset-windows.ts'
import type { EvalWindowsCache } from './fold/eval-windows.ts'
import type { ModelFold, ParamsJson, ProposalExplain } from './fold/types.ts'
import type { MeasureOptions } from './pol/measure.ts'
import type { RuleParams, RuleResult } from './pol/rule.ts'
import type { LoadedDelta, UnitWeights } from './version-weights.ts'
import type { BlockSigner, ChainStoreApi, StoredBlock } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { Qwen3Config } from '../model/qwen3/config.ts'
import type { DatasetMeasurement } from '../protocols/attestation.ts'

export interface ValidateInit {
  /** reads blocks and payloads; `attestProposal` also writes the Attestation with it */
  store: ChainStoreApi
  /** the validator's key */
  signer: BlockSigner
  /** the proposal's model (read from the store when not given) */
  manifest?: ModelManifest
  /** the model's fold, current */
  fold: ModelFold
  proposal: ProposalExplain
  /** body hashes of the model's deltas (the service keeps one; a fresh one when not given) */
  bodies?: DeltaBodyIndex
  /** the daemon's eval windows cache (datasets are read from the store when not given) */
  evalWindows?: EvalWindowsCache
  /** awaited before each eval window (the service defers to inference there) */
  pause?: MeasureOptions['pause']
  /** tensor-parallel worker threads for the forward passes (default 0: this thread) */
  workers?: number
  signal?: AbortSignal
  /** told when a new phase starts (status) */
  onPhase?(phase: 'checks' | 'weights' | 'base' | 'candidate'): void
}

/** What a validator concluded, and what it measured. */
export interface ValidationOutcome {
  /** `ok` (accept), or the reject reason */
  reason: string
  /** why, in words (logs and status; not published) */
  detail: string
  seedSig: Uint8Array
  /** the proposal's dataset then the regression datasets; empty for a structural reject */
  measurements: DatasetMeasurement[]
  /** the rule's result on the measurements (none for a structural reject) */
  rule?: RuleResult
  timings: { checksMs: number, weightsMs: number, baseMs: number, candidateMs: number, totalMs: number }
}

/** The params of the governance state the proposal names. */
function paramsOf (fold: ModelFold, proposal: ProposalExplain): ParamsJson {
  const state = fold.governance.history.find(g => g.id === proposal.governance)
  if (state?.params == null) {
    throw new LearningError(LearningErrorCode.NO_GENESIS, `proposal ${proposal.id} names governance state ${proposal.governance}, which has no params here`)
  }
  return state.params
}

/** The datasets the attestation measures, in order: the proposal's, then the regression datasets. */
async function readDatasets (store: ChainStoreApi, manifest: ModelManifest, ids: readonly string[]): Promise<DatasetWindows[] | { reason: string, detail: string }> {
  const out: DatasetWindows[] = []
  for (const id of ids) {
    const block = await store.get(fromHex(id))
    if (block == null) {
      throw new DatasetError(DatasetErrorCode.PAYLOAD_MISSING, `dataset ${id} is not stored here yet`)
    }
    try {
      out.push(await loadDatasetWindows(store, block, manifest))
    } catch (err) {
      if (err instanceof DatasetError && err.code !== DatasetErrorCode.PAYLOAD_MISSING) {
        return { reason: Reason.DATASET, detail: `dataset ${id.slice(0, 12)}: ${err.code}: ${err.message}` }
      }
      throw err
    }
  }
  return out
}

/** base + the proposal's deltas (fresh arrays for the changed tensors); `non-finite` when a weight overflows. */
function candidateOf (live: readonly UnitWeights[], deltas: readonly LoadedDelta[]): UnitWeights[] | { reason: string, detail: string } {
  const out = live.map(u => ({ ...u }))
  for (const d of deltas) {
    const entry = out.find(u => u.unit === d.unit)
    if (entry == null) {
      return { reason: Reason.SHAPE, detail: `delta ${d.id.slice(0, 12)} names unit ${d.unit}, which the model does not have` }
    }
    try {
      entry.tensors = applyDelta(entry.tensors, d.delta)
    } catch (err: any) {
      if (err instanceof BlydError) {
        const reason = err.code === WeightDeltaErrorCode.NON_FINITE_RESULT ? Reason.NON_FINITE : Reason.SHAPE
        return { reason, detail: `delta ${d.id.slice(0, 12)} (unit ${d.unit}): ${err.code}: ${err.message}` }
      }
      throw err
    }
  }
  return out
}

/** The structural checks of the file comment, in order; the decoded deltas and the datasets when all pass. */
async function structuralChecks (init: ValidateInit, manifest: ModelManifest, params: ParamsJson): Promise<{ ok: true, deltas: LoadedDelta[], datasets: DatasetWindows[] } | { ok: false, reason: string, detail: string }> {
  const { store, fold, proposal } = init
  const early = checkBase(fold, proposal) ?? await checkSizes(store, manifest, proposal)
  if (early != null && !early.ok) {
    return early
  }
  const checked = await checkDeltas(store, manifest, proposal)
  if (!checked.ok) {
    return checked
  }
  const duplicate = await checkDuplicate(store, manifest, fold, proposal, checked.deltas, init.bodies ?? new DeltaBodyIndex())
  if (duplicate != null && !duplicate.ok) {
    return duplicate
  }
  const datasets = await readDatasets(store, manifest, [proposal.dataset, ...params.regressionDatasets])
  if (!Array.isArray(datasets)) {
    return { ok: false, ...datasets }
  }
  return { ok: true, deltas: checked.deltas, datasets }
}

/**
 * Checks and measures `init.proposal` (see the file comment). Pure but for
 * reading the store and the model math: writes nothing. Throws on local
 * trouble (a payload not stored, a base version that cannot be computed),
 * which is no finding about the proposal.
 */
export async function validateProposal (init: ValidateInit): Promise<ValidationOutcome> {
  const { store, fold, proposal } = init
  const t0 = performance.now()
  const timings = { checksMs: 0, weightsMs: 0, baseMs: 0, candidateMs: 0, totalMs: 0 }
  const proposalId = fromHex(proposal.id)
  const seedSig = await signSeed(init.signer, proposalId)
  const done = (reason: string, detail: string, measurements: DatasetMeasurement[] = [], ruleResult?: RuleResult): ValidationOutcome => {
    timings.totalMs = performance.now() - t0
    return { reason, detail, seedSig, measurements, ...(ruleResult != null ? { rule: ruleResult } : {}), timings }
  }
  init.onPhase?.('checks')
  const manifest = init.manifest ?? await loadModelManifest(store, fromHex(fold.model))
  const params = paramsOf(fold, proposal)
  const checked = await structuralChecks(init, manifest, params)
  if (!checked.ok) {
    return done(checked.reason, checked.detail)
  }
  const { deltas, datasets } = checked
  const samples = datasets.map(d => sampleFor(seedSig, d.split.evalWindows, params.sampleWindows))
  timings.checksMs = performance.now() - t0

  init.onPhase?.('weights')
  const t = performance.now()
  const live = await versionWeights(store, manifest, fold.live)
  timings.weightsMs = performance.now() - t
  const judged = await judgeCandidate({
    config: manifest.qwen3,
    params,
    live,
    deltas,
    datasets,
    samples,
    labels: { base: `version ${fold.live.id.slice(0, 12)}`, candidate: `proposal ${proposal.id.slice(0, 12)}` },
    workers: init.workers,
    pause: init.pause,
    signal: init.signal,
    onPhase: init.onPhase
  })
  timings.baseMs = judged.baseMs
  timings.candidateMs = judged.candidateMs
  return done(judged.reason, judged.detail, judged.measurements, judged.rule)
}

export interface JudgeInit {
  config: Qwen3Config
  params: RuleParams
  /** the live version's weights (left unchanged) */
  live: readonly UnitWeights[]
  /** the proposal's deltas, decoded and checked (checkDeltaPayload) */
  deltas: readonly LoadedDelta[]
  /** the proposal's dataset, then the regression datasets */
  datasets: readonly DatasetWindows[]
  /** the sampled windows of each dataset, in order */
  samples: ReadonlyArray<readonly number[]>
  /** the live version's losses on the samples (micro-nats, per dataset), when already measured: the base is then not loaded */
  baseLosses?: ReadonlyArray<readonly bigint[]>
  labels?: { base?: string, candidate?: string }
  workers?: number
  pause?: MeasureOptions['pause']
  signal?: AbortSignal
  onPhase?(phase: 'base' | 'candidate'): void
}

export interface Judged {
  /** `ok`, a rule reason, or `non-finite` / `shape` (the candidate cannot be built or measured) */
  reason: string
  detail: string
  measurements: DatasetMeasurement[]
  rule?: RuleResult
  baseMs: number
  candidateMs: number
}

/**
 * Steps 3 and 4 of the file comment for a proposal whose structure passed:
 * the candidate (live + deltas; a weight that overflows f32: `non-finite`),
 * the per-window losses of base and candidate on the samples (one whole
 * model in tfjs at a time; a candidate loss that is not finite:
 * `non-finite`), and the rule on them.
 */
export async function judgeCandidate (init: JudgeInit): Promise<Judged> {
  const { datasets, samples } = init
  const timings = { baseMs: 0, candidateMs: 0 }
  const candidate = candidateOf(init.live, init.deltas)
  if (!Array.isArray(candidate)) {
    return { ...candidate, measurements: [], ...timings }
  }
  const measure = async (units: readonly UnitWeights[], label?: string): Promise<bigint[][]> => {
    const model = await loadWholeModel(init.config, units, { workers: init.workers, label })
    try {
      const out: bigint[][] = []
      for (const [i, d] of datasets.entries()) {
        out.push((await measureWindows(model, d, samples[i], { pause: init.pause, signal: init.signal })).map(toMicroNats))
      }
      return out
    } finally {
      model.dispose()
    }
  }
  init.onPhase?.('base')
  let t = performance.now()
  const baseLosses = init.baseLosses ?? await measure(init.live, init.labels?.base)
  timings.baseMs = performance.now() - t
  init.onPhase?.('candidate')
  t = performance.now()
  let candLosses: bigint[][]
  try {
    candLosses = await measure(candidate, init.labels?.candidate)
  } catch (err: any) {
    // the base gave finite losses on these windows: a candidate that does not is the proposal's fault
    if (err instanceof RangeError || (err instanceof ModelError && err.code === ModelErrorCode.BAD_INPUT && /non-finite/.test(err.message))) {
      return { reason: Reason.NON_FINITE, detail: `the candidate's loss is not finite: ${String(err.message)}`, measurements: [], ...timings, candidateMs: performance.now() - t }
    }
    throw err
  }
  timings.candidateMs = performance.now() - t
  const measurements: DatasetMeasurement[] = datasets.map((d, i) => ({ datasetId: d.datasetId, windows: [...samples[i]], base: [...baseLosses[i]], cand: candLosses[i] }))
  const [main, ...regressions] = measurements
  const result = rule(main, regressions, init.params)
  const gain = result.gainPpm != null ? `${Number(result.gainPpm) / 1e4}%` : 'n/a'
  const detail = `${result.m} windows, gain ${gain}, mean loss ${Number(result.baseSum) / Math.max(1, result.m) / 1e6} -> ${Number(result.candSum) / Math.max(1, result.m) / 1e6} nats`
  return { reason: result.reason, detail, measurements, rule: result, ...timings }
}

/** validateProposal(), then the Attestation block written with `init.store` (the daemon's store gossips it). */
export async function attestProposal (init: ValidateInit): Promise<{ block: StoredBlock, outcome: ValidationOutcome }> {
  const outcome = await validateProposal(init)
  init.signal?.throwIfAborted()
  const block = await init.store.createBlock(attestationBlock({
    model: fromHex(init.fold.model),
    proposal: fromHex(init.proposal.id),
    seedSig: outcome.seedSig,
    reason: outcome.reason,
    measurements: outcome.measurements
  }), init.signer)
  return { block, outcome }
}
