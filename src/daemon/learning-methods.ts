/**
 * IPC methods of the learning path: `delta.propose` (the daemon reads the
 * checkpoint folder at the absolute path given: the socket is local, so
 * caller and daemon share the file system), `proposals`, `proposal.show`
 * and `validators` (list; with add/remove it publishes a motion or a vote).
 * Blocks are written with the daemon's publishing store, so they are
 * gossiped.
 *
 * Proposals and validator changes run one at a time (a queue in this
 * registration, not module state): two proposals at once would hold two
 * whole models in memory, and two changes at once could both publish a
 * motion where the second should vote.
 */
import { isAbsolute } from 'node:path'
import { proposeCheckpoint } from '../learning/delta-propose.ts'
import { changeValidators, listProposals, listValidators, showProposal } from '../learning/pol-commands.ts'
import { trainLocal } from '../learning/train/local-train.ts'
import { DELTA_CODECS } from '../protocols/delta.ts'
import { InvalidParamsError } from './errors.ts'
import { objectParams, oneOf, optionalString, requiredString } from './params.ts'
import type { IpcServer } from './ipc-server.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { EvalWindowsCache } from '../learning/fold/eval-windows.ts'
import type { TrainJobLog } from '../learning/train/job-log.ts'
import type { LocalTrainInit } from '../learning/train/local-train.ts'
import type { ProposalShowParams, ProposalsParams, ProposeParams, ProposeResultJson, TrainParams, TrainResultJson, ValidatorsParams } from '../protocols/ipc-learning.ts'

export interface LearningMethodContext {
  ipc: IpcServer
  /** the publishing store: blocks written are gossiped */
  store(): ChainStoreApi
  signer(): BlockSigner
  /** the daemon's eval windows cache (shared with the validator service) */
  evalWindows(): EvalWindowsCache
  /** tensor-parallel workers for the proposer's forward passes */
  workers?(): number
  /** called after a proposal or a governance block was written (the validator service looks at once) */
  onWritten?(): void
  onProposed?(result: ProposeResultJson): void
  /** true while inference runs (generations, served sessions): a training job's units wait for it */
  busy?(): boolean
  /** `train` with via 'mesh': the job through the mesh's span holders (absent: the network is not up) */
  trainViaMesh?(init: Omit<LocalTrainInit, 'store' | 'signer'> & { signer: BlockSigner }): Promise<TrainResultJson>
  /** the record of training jobs that status and the dashboard show */
  trainJobs?: TrainJobLog
}

function absolutePath (value: unknown, name: string): string {
  const path = requiredString(value, name)
  if (!isAbsolute(path)) {
    throw new InvalidParamsError(`"${name}" must be an absolute path (the daemon's working directory is not the caller's)`)
  }
  return path
}

function optionalNumber (value: unknown, name: string): number | undefined {
  if (value === undefined) {
    return undefined
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidParamsError(`"${name}" must be a finite number`)
  }
  return value
}

function optionalInteger (value: unknown, name: string): number | undefined {
  if (value !== undefined && !Number.isSafeInteger(value)) {
    throw new InvalidParamsError(`"${name}" must be an integer`)
  }
  return value as number | undefined
}

const proposeParams = objectParams<{ [K in keyof Required<ProposeParams>]: ProposeParams[K] }>({
  model: optionalString,
  checkpoint: absolutePath,
  dataset: requiredString,
  codec: oneOf(DELTA_CODECS),
  density: optionalNumber,
  rank: optionalInteger,
  claimWindows: optionalInteger
})

function optionalBoolean (value: unknown, name: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidParamsError(`"${name}" must be a boolean`)
  }
  return value as boolean | undefined
}

function requiredInteger (value: unknown, name: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new InvalidParamsError(`"${name}" must be an integer`)
  }
  return value as number
}

const trainParams = objectParams<{ [K in keyof Required<TrainParams>]: TrainParams[K] }>({
  model: optionalString,
  dataset: requiredString,
  steps: requiredInteger,
  lr: optionalNumber,
  batch: optionalInteger,
  seq: optionalInteger,
  loraRank: optionalInteger,
  full: optionalBoolean,
  seed: optionalInteger,
  evalEvery: optionalInteger,
  propose: optionalBoolean,
  via: oneOf(['local', 'mesh'] as const)
})

const proposalsParams = objectParams<{ [K in keyof Required<ProposalsParams>]: ProposalsParams[K] }>({ model: optionalString })

const showParams = objectParams<{ [K in keyof Required<ProposalShowParams>]: ProposalShowParams[K] }>({ id: requiredString, model: optionalString })

const validatorsParams = objectParams<{ [K in keyof Required<ValidatorsParams>]: ValidatorsParams[K] }>({ model: optionalString, add: optionalString, remove: optionalString })

export function registerLearningMethods (ctx: LearningMethodContext): void {
  const { ipc } = ctx
  let writing: Promise<unknown> = Promise.resolve()
  const serial = async <T>(fn: () => Promise<T>): Promise<T> => {
    const run = writing.then(fn)
    writing = run.catch(() => {})
    return run
  }

  ipc.register('delta.propose', proposeParams, async (params, context) => {
    const result = await serial(async () => proposeCheckpoint({
      store: ctx.store(),
      signer: ctx.signer(),
      ...params,
      evalWindows: ctx.evalWindows(),
      workers: ctx.workers?.() ?? 0,
      signal: context.signal
    }))
    ctx.onProposed?.(result)
    ctx.onWritten?.()
    return result
  })

  // one job at a time (it holds the whole model's weights); its units yield to the daemon's inference
  let training: Promise<unknown> = Promise.resolve()
  ipc.register('train', trainParams, async (request, context) => {
    const { via, ...params } = request
    const job = ctx.trainJobs?.queue(params)
    const onStep = (s: { step: number, steps: number, loss: number, tokensPerSecond: number }): void => {
      if (job != null) {
        ctx.trainJobs?.step(job, s)
      }
      context.notify({ kind: 'step', step: s.step, steps: s.steps, loss: s.loss, tokensPerSecond: s.tokensPerSecond }).catch(() => {})
    }
    const onEval = (step: number, loss: number): void => {
      if (job != null) {
        ctx.trainJobs?.evaluated(job, step, loss)
      }
      context.notify({ kind: 'eval', step, loss }).catch(() => {})
    }
    const mesh = ctx.trainViaMesh
    if (via === 'mesh' && mesh == null) {
      throw new InvalidParamsError('train via mesh needs the network (the daemon runs without it)')
    }
    // via mesh: the stages hold the layers (no local whole-model job to wait for); else one local job at a time
    const run = via === 'mesh' && mesh != null
      ? mesh({ signer: ctx.signer(), ...params, onStep, onEval, signal: context.signal })
      : training.then(async () => trainLocal({
        store: ctx.store(),
        signer: ctx.signer(),
        ...params,
        // in a training thread at the lowest OS priority: a generation arriving mid-unit takes the core
        // at once instead of waiting for the unit (bench/train --interference); units still wait while busy()
        thread: { busy: ctx.busy },
        onStep,
        onEval,
        signal: context.signal
      }))
    if (via !== 'mesh') {
      training = run.catch(() => {})
    }
    if (job != null) {
      run.then(r => { ctx.trainJobs?.done(job, r) }, err => { ctx.trainJobs?.failed(job, err) })
    }
    const result = await run
    if (result.proposalId != null) {
      ctx.onWritten?.()
    }
    return result
  })

  ipc.register('proposals', proposalsParams, async (params) => listProposals(ctx.store(), { ...params, evalWindows: ctx.evalWindows() }))

  ipc.register('proposal.show', showParams, async ({ id, model }) => showProposal(ctx.store(), id, { ...(model != null ? { model } : {}), evalWindows: ctx.evalWindows() }))

  ipc.register('validators', validatorsParams, async (params) => {
    if (params.add == null && params.remove == null) {
      return listValidators(ctx.store(), { ...(params.model != null ? { model: params.model } : {}), evalWindows: ctx.evalWindows() })
    }
    const result = await serial(async () => changeValidators(ctx.store(), ctx.signer(), { ...params, evalWindows: ctx.evalWindows() }))
    ctx.onWritten?.()
    return result
  })
}
