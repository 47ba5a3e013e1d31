/**
 * Server-side state of one inbound /bly/infer/1.0.0 channel (libp2p stream
 * or direct channel): before OPEN it
 * holds nothing; after OPEN_OK it owns one KV session, a FIFO of steps not
 * yet computed and an idle timer. The StageServer drives it.
 */
import type { InferChannel } from './infer-channel.ts'
import type { StageKv } from './stage-layers.ts'
import type { ForwardFrame, TruncateFrame } from '../protocols/infer.ts'

export type StageJob = ForwardFrame | TruncateFrame

export const SessionState = {
  AWAITING_OPEN: 'awaiting-open',
  OPEN: 'open',
  CLOSED: 'closed'
} as const

export type SessionStateValue = typeof SessionState[keyof typeof SessionState]

/**
 * The cache positions a session of `maxLength` positions over `layerShare`
 * of a stage's layers reserves, counted over the whole span (rounded up):
 * KV memory grows with the layers a session runs.
 */
export function cachePositionsFor (maxLength: number, layerShare: number): number {
  return Math.ceil(maxLength * layerShare)
}

export class StageSession {
  readonly frames: InferChannel
  readonly remotePeer: string
  state: SessionStateValue
  sessionId: number
  priority: number
  flags: number
  /** positions granted */
  maxLength: number
  /** the share of the stage's layers the session runs (1 = the whole span) */
  layerShare: number
  kv: StageKv | null
  /** steps not computed yet, oldest first (queuedAt: performance.now() when queued) */
  readonly jobs: Array<{ job: StageJob, ticket: number, queuedAt: number }>
  /** a job of this session is being computed now */
  busy: boolean
  /** what OPEN_OK granted: the model and the layers [start, end) the session runs (for its receipt) */
  opened?: { modelId: string, start: number, end: number, weightsVersion?: string }
  /** positions this stage ran its layers on in this session (rows of the FORWARDs it computed) */
  positions: number
  private timer?: ReturnType<typeof setTimeout>

  constructor (frames: InferChannel, remotePeer: string) {
    this.frames = frames
    this.remotePeer = remotePeer
    this.state = SessionState.AWAITING_OPEN
    this.sessionId = 0
    this.priority = 0
    this.flags = 0
    this.maxLength = 0
    this.layerShare = 1
    this.kv = null
    this.jobs = []
    this.busy = false
    this.positions = 0
  }

  /** what the session holds of the server's cache budget, in whole-span positions */
  get reserved (): number {
    return cachePositionsFor(this.maxLength, this.layerShare)
  }

  /** (Re)arm the timer: `onIdle` runs once after `ms` without another arm(). */
  arm (ms: number, onIdle: () => void): void {
    this.disarm()
    this.timer = setTimeout(() => {
      this.timer = undefined
      onIdle()
    }, ms)
    this.timer.unref?.()
  }

  disarm (): void {
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
  }

  /** Drops the queued jobs and frees the KV cache (unless a job is computing: the server frees it after). */
  release (): void {
    this.state = SessionState.CLOSED
    this.disarm()
    this.jobs.length = 0
    if (!this.busy) {
      this.kv?.dispose()
      this.kv = null
    }
  }
}
