/**
 * The order a stage server computes steps in: one step at a time over the
 * whole server (the math uses every core already); per session in arrival
 * order; across sessions highest priority first, then oldest first, a
 * waiting step gaining one priority level per priorityAgingMs
 * (step-order.ts). A step's session is marked busy while it computes, so
 * its KV cache outlives a release until the step ends.
 */
import { SessionState } from './stage-session.ts'
import { runsBefore } from './step-order.ts'
import type { StageJob, StageSession } from './stage-session.ts'
import type { BlyLogger } from '../protocols/logger.ts'

export interface StageSchedulerInit {
  /** a queued step gains one priority level per this many ms it waits */
  priorityAgingMs: number
}

export interface StageSchedulerComponents {
  /** the sessions whose queued steps compete */
  sessions(): Iterable<StageSession>
  /** computes one step and answers it (never called twice at once) */
  run(s: StageSession, job: StageJob): Promise<void>
  /** after a step of `s` ended (its session may have been released meanwhile) */
  afterStep(s: StageSession): void
  /** the stage server's logger */
  log: BlyLogger
}

export class StageScheduler {
  private readonly init: StageSchedulerInit
  private readonly components: StageSchedulerComponents
  private running?: Promise<void>

  constructor (components: StageSchedulerComponents, init: StageSchedulerInit) {
    this.components = components
    this.init = init
  }

  /** Starts the next queued step unless one is computing. */
  schedule (): void {
    if (this.running != null) {
      return
    }
    const s = this.pick()
    if (s == null) {
      return
    }
    const { job } = s.jobs.shift() as { job: StageJob }
    s.busy = true
    this.running = this.components.run(s, job)
      .catch((err) => {
        this.components.log.error('step failed - %e', err)
      })
      .finally(() => {
        s.busy = false
        this.components.afterStep(s)
        this.running = undefined
        this.schedule()
      })
  }

  /** Resolves once the step computing now (if any) has ended. */
  async idle (): Promise<void> {
    await this.running?.catch(() => {})
  }

  /** The next job: highest priority first, aged by its wait (step-order.ts), then the oldest. */
  private pick (): StageSession | undefined {
    const agingMs = this.init.priorityAgingMs
    let best: StageSession | undefined
    for (const s of this.components.sessions()) {
      if (s.state !== SessionState.OPEN || s.jobs.length === 0) {
        continue
      }
      if (best == null || runsBefore({ priority: s.priority, ...s.jobs[0] }, { priority: best.priority, ...best.jobs[0] }, agingMs)) {
        best = s
      }
    }
    return best
  }
}
