/**
 * The stages of one pipeline-training job as the driver holds them: per
 * hop of the route, the stream to the holder in use, the other live holders
 * of its layers, and the driver's checkpoint of the hop's trainable state
 * (STATE: values and AdamW moments after the last completed step). Faults
 * are recovered here (issue 12 item 4):
 *
 * - `run(phase)` runs a phase (a step, an eval, the final fetch); when it
 * fails with a stage's fault (the stream closed or reset, no answer in
 * time, an ERROR other than BAD_REQUEST, an answer that does not fit or
 * holds a non-finite value, a garbage verdict of an audit) the faulty
 * hop's holder is excluded for the job and replaced by the next live
 * holder of its layers (OPEN_JOB, then LOAD_STATE with the checkpoint);
 * every other hop takes its checkpoint again (LOAD_STATE drops what the
 * step held and zeroes the gradients); then the phase runs again with the
 * same inputs. Nothing of a failed step is applied anywhere (a stage
 * applies only at STEP, and a stage that did is loaded back), so the job
 * goes on exactly as an undisturbed one: the same losses, the same
 * tensors. At most `maxRecoveries` per job (ERR_PTRAIN_TOO_MANY_FAULTS);
 * a hop with no holder left ends the job ERR_PTRAIN_NO_HOLDER. Each
 * recovery is logged at warn and counted.
 * - `audit(...)` has another holder recompute a hop's step from the same
 * checkpoint and inputs (train-audit.ts) and says whose answer stands.
 *
 * Ordering: a phase's requests all settle before a recovery starts (no
 * request of the failed attempt is in flight when the stages are loaded
 * back); the checkpoint moves only when a whole step (STEP and FETCH_STATE
 * on every hop) succeeded.
 */
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { TrainFrameType, TrainWireError } from '../../protocols/train.ts'
import { disagreement, recompute } from './train-audit.ts'
import { TrainStageClient } from './train-stage-client.ts'
import type { AnswerHistory, StageAnswers, StageInputs } from './train-audit.ts'
import type { BlyLogger } from '../../protocols/logger.ts'
import type { OpenJobFrame, StateFrame } from '../../protocols/train.ts'
import type { Stream } from '@libp2p/interface'

/** A live holder of a hop's layers: `connect` opens a /bly/train/1.0.0 stream to it. */
export interface TrainHolder {
  /** names the holder in logs and exclusions (e.g. its peer id) */
  id: string
  connect(): Promise<Stream>
}

export type Checkpoint = StateFrame<typeof TrainFrameType.STATE>

export interface TrainStageSetInit {
  job: string
  /** per hop: its holders, the one to use first first */
  holders: TrainHolder[][]
  /** the OPEN_JOB of hop `s` under job id `job` */
  openFrame(s: number, job: string): OpenJobFrame
  timeoutMs: number
  maxFrameBytes: number
  maxRecoveries: number
  auditTolerance: number
  log?: BlyLogger
}

export interface FaultCounts {
  /** faults recovered from (a step, an eval or the fetch ran again) */
  recoveries: number
  /** holders replaced by another holder of the same layers */
  replaced: number
  /** audits run (another holder recomputed a stage's step) */
  audits: number
  /** answers found garbage by an audit (their holder replaced) */
  garbage: number
  /** anomalous answers no other holder could audit (applied, logged at warn) */
  unverified: number
}

/** Is `err` a stage's fault that another holder can recover from? */
export function recoverable (err: unknown): err is TrainProtocolError & { stage: number } {
  if (!(err instanceof TrainProtocolError) || err.stage == null) {
    return false
  }
  switch (err.code) {
    case TrainProtocolErrorCode.STREAM_CLOSED:
    case TrainProtocolErrorCode.TIMEOUT:
    case TrainProtocolErrorCode.NON_FINITE:
    case TrainProtocolErrorCode.BAD_REPLY:
    case TrainProtocolErrorCode.BAD_FRAME:
    case TrainProtocolErrorCode.GARBAGE:
      return true
    case TrainProtocolErrorCode.REMOTE:
      return err.remoteCode !== TrainWireError.BAD_REQUEST
    default:
      return false
  }
}

/** Every promise settled; then the first rejection (in order) is thrown, or the values are returned. */
export async function settleAll<T> (ps: ReadonlyArray<Promise<T>>): Promise<T[]> {
  const rs = await Promise.allSettled(ps)
  const bad = rs.find(r => r.status === 'rejected')
  if (bad != null) {
    throw bad.reason
  }
  return rs.map(r => (r as PromiseFulfilledResult<T>).value)
}

export class TrainStageSet {
  readonly clients: TrainStageClient[]
  readonly counts: FaultCounts
  /** per hop: the driver's copy of its state after the last completed step */
  checkpoint: Checkpoint[]
  private readonly init: TrainStageSetInit
  /** per hop: the holder in use (index into init.holders[s]) and the excluded ones */
  private readonly current: number[]
  private readonly excluded: Array<Set<string>>
  /** per hop: the job id on its holder (the job's id; a replacement or an audit gets a suffix: one holder may serve two hops) */
  private readonly jobIds: string[]
  private opened: number

  constructor (init: TrainStageSetInit) {
    this.init = init
    this.clients = []
    this.checkpoint = []
    this.current = init.holders.map(() => 0)
    this.excluded = init.holders.map(() => new Set())
    this.jobIds = init.holders.map(() => init.job)
    this.opened = 0
    this.counts = { recoveries: 0, replaced: 0, audits: 0, garbage: 0, unverified: 0 }
  }

  get size (): number {
    return this.init.holders.length
  }

  /** The job id hop `s` goes by on its holder. */
  jobId (s: number): string {
    return this.jobIds[s]
  }

  /** The id of the holder in use on hop `s`. */
  holderId (s: number): string {
    return this.init.holders[s][this.current[s]].id
  }

  /** Holders of hop `s` neither in use nor excluded, in order. */
  spare (s: number): TrainHolder[] {
    return this.init.holders[s].filter((h, i) => i !== this.current[s] && !this.excluded[s].has(h.id))
  }

  private async connect (holder: TrainHolder, s: number): Promise<TrainStageClient> {
    let stream: Stream
    try {
      stream = await holder.connect()
    } catch (err) {
      throw new TrainProtocolError(TrainProtocolErrorCode.STREAM_CLOSED, `stage ${s}: cannot open a stream to holder ${holder.id} - ${(err as Error).message}`, { stage: s, cause: err })
    }
    return new TrainStageClient(stream, { stage: s, timeoutMs: this.init.timeoutMs, maxFrameBytes: this.init.maxFrameBytes })
  }

  /** Opens the job on hop `s`'s next usable holder (the first one first): OPEN_JOB, then the checkpoint (or, at the start, fetches it). */
  private async openHop (s: number, cause: Error | null): Promise<void> {
    const holders = this.init.holders[s]
    for (let i = cause == null ? this.current[s] : 0; i < holders.length; i++) {
      const holder = holders[i]
      if (this.excluded[s].has(holder.id)) {
        continue
      }
      const job = cause == null ? this.init.job : `${this.init.job}.${s}.${++this.opened}`
      let client: TrainStageClient | null = null
      try {
        client = await this.connect(holder, s)
        await client.request(this.init.openFrame(s, job), TrainFrameType.OPENED)
        if (this.checkpoint[s] == null) {
          this.checkpoint[s] = await client.request<Checkpoint>({ type: TrainFrameType.FETCH_STATE, job }, TrainFrameType.STATE)
        } else {
          const c = this.checkpoint[s]
          await client.request({ type: TrainFrameType.LOAD_STATE, job, step: c.step, tensors: c.tensors }, TrainFrameType.LOADED)
        }
        this.clients[s] = client
        this.current[s] = i
        this.jobIds[s] = job
        return
      } catch (err) {
        await client?.close()
        this.excluded[s].add(holder.id)
        this.init.log?.warn('train job %s: holder %s of stage %d could not take the job - %s', this.init.job, holder.id, s, (err as Error).message)
        cause = err as Error
      }
    }
    throw new TrainProtocolError(TrainProtocolErrorCode.NO_HOLDER, `stage ${s}: no live holder of its layers is left${cause != null ? ` (last failure: ${cause.message})` : ''}`, { stage: s, ...(cause != null ? { cause } : {}) })
  }

  /** Opens the job on every hop and takes the first checkpoint (the state before step 1). */
  async open (): Promise<void> {
    for (let s = 0; s < this.size; s++) {
      await this.openHop(s, null)
    }
  }

  /** Every hop's state now (after a STEP): the next checkpoint, once the caller commits it. */
  async fetchStates (): Promise<Checkpoint[]> {
    return settleAll(this.clients.map(async (c, s) => c.request<Checkpoint>({ type: TrainFrameType.FETCH_STATE, job: this.jobIds[s] }, TrainFrameType.STATE)))
  }

  /** Runs `phase`, recovering from stage faults (see the file comment). */
  async run<T> (what: string, phase: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await phase()
      } catch (err) {
        if (!recoverable(err)) {
          throw err
        }
        await this.recover(what, err)
      }
    }
  }

  private async recover (what: string, err: TrainProtocolError & { stage: number }): Promise<void> {
    if (this.counts.recoveries >= this.init.maxRecoveries) {
      throw new TrainProtocolError(TrainProtocolErrorCode.TOO_MANY_FAULTS, `${what}: ${this.counts.recoveries} recoveries, the job's bound; the last fault - ${err.message}`, { stage: err.stage, cause: err })
    }
    this.counts.recoveries++
    this.init.log?.warn('train job %s: %s failed on stage %d (holder %s) - %s; replacing it and loading every stage back to step %d', this.init.job, what, err.stage, this.holderId(err.stage), err.message, this.checkpoint[err.stage]?.step ?? 0)
    for (let s = 0; s < this.size; s++) {
      let cause: Error | null = s === err.stage || this.clients[s].broken ? err : null
      if (cause == null) {
        try {
          const c = this.checkpoint[s]
          await this.clients[s].request({ type: TrainFrameType.LOAD_STATE, job: this.jobIds[s], step: c.step, tensors: c.tensors }, TrainFrameType.LOADED)
        } catch (e) {
          cause = e as Error
        }
      }
      if (cause != null) {
        this.excluded[s].add(this.holderId(s))
        await this.clients[s].close()
        await this.openHop(s, cause)
        this.counts.replaced++
        this.init.log?.warn('train job %s: stage %d [holder %s] took over from its checkpoint at step %d', this.init.job, s, this.holderId(s), this.checkpoint[s].step)
      }
    }
  }

  /** One recomputation of hop `s`'s step on `holder`; null (and the holder excluded) when it cannot do it. */
  private async recomputeOn (holder: TrainHolder, s: number, step: number, inputs: StageInputs, head: boolean): Promise<StageAnswers | null> {
    let client: TrainStageClient | null = null
    try {
      client = await this.connect(holder, s)
      this.counts.audits++
      return await recompute(client, this.init.openFrame(s, `${this.init.job}.${s}.audit.${++this.opened}`), this.checkpoint[s], step, inputs, head)
    } catch (err) {
      this.excluded[s].add(holder.id)
      this.init.log?.warn('train job %s: holder %s could not audit stage %d - %s', this.init.job, holder.id, s, (err as Error).message)
      return null
    } finally {
      await client?.close()
    }
  }

  /**
   * Has other holders of hop `s` recompute its step and says whose answer
   * stands: 'ok' when the first auditor agrees (or when a second agrees
   * with the stage against the first, which is then excluded); throws
   * GARBAGE (a recoverable fault of hop `s`) when the first auditor
   * disagrees and the stage's answer was anomalous while the auditor's is
   * not, or when two auditors agree against the stage; 'unverified' when no
   * holder could audit; throws AUDIT_UNDECIDED otherwise.
   */
  async audit (s: number, step: number, inputs: StageInputs, answers: StageAnswers, history: AnswerHistory, anomaly: string | null, head: boolean): Promise<'ok' | 'unverified'> {
    const tol = this.init.auditTolerance
    let first: { holder: TrainHolder, answers: StageAnswers, differs: string } | null = null
    for (const holder of this.spare(s)) {
      const other = await this.recomputeOn(holder, s, step, inputs, head)
      if (other == null) {
        continue
      }
      if (first == null) {
        const differs = disagreement(answers, other, tol)
        if (differs == null) {
          return 'ok'
        }
        if (anomaly != null && history.anomalous(other) == null) {
          throw this.garbage(s, step, `${anomaly}; holder ${holder.id} recomputed it and differs in ${differs}`)
        }
        first = { holder, answers: other, differs }
        continue
      }
      if (disagreement(other, first.answers, tol) == null) {
        throw this.garbage(s, step, `holders ${first.holder.id} and ${holder.id} recomputed it alike and differ in ${first.differs}`)
      }
      if (disagreement(answers, other, tol) == null) {
        this.excluded[s].add(first.holder.id)
        this.init.log?.warn('train job %s: auditor %s of stage %d was outvoted (%s): excluded', this.init.job, first.holder.id, s, first.differs)
        return 'ok'
      }
      break
    }
    if (first == null) {
      return 'unverified'
    }
    throw new TrainProtocolError(TrainProtocolErrorCode.AUDIT_UNDECIDED, `stage ${s} (holder ${this.holderId(s)}) and holder ${first.holder.id} answer step ${step} differently (${first.differs}), and no third holder settles it: nothing applied`, { stage: s })
  }

  private garbage (s: number, step: number, why: string): TrainProtocolError {
    this.counts.garbage++
    return new TrainProtocolError(TrainProtocolErrorCode.GARBAGE, `stage ${s} (holder ${this.holderId(s)}) answered garbage at step ${step}: ${why}; refused, nothing applied`, { stage: s })
  }

  /** CLOSE on every hop (failures ignored: a stream's end frees the job anyway), then the streams end. */
  async close (): Promise<void> {
    await Promise.allSettled(this.clients.map(async (c, s) => c.request({ type: TrainFrameType.CLOSE, job: this.jobIds[s] }, TrainFrameType.CLOSED)))
    await this.closeStreams()
  }

  async closeStreams (): Promise<void> {
    await Promise.all(this.clients.map(async c => { await c.close() }))
  }
}
