/**
 * Admission on a stage server: which sessions it holds and the cache room
 * they reserve. An OPEN is checked (wire version, model, layer range, head,
 * length) and then admitted only when a session slot and its cache positions
 * fit the share its priority may fill (admitShare; an idle stage admits
 * anyone); otherwise it is BUSY at once. A session's slot and reserved
 * positions are given back by release(), before any last frame goes out.
 */
import { INFER_WIRE_VERSION, InferErrorCode, OpenFlags } from '../protocols/infer.ts'
import { SessionState, cachePositionsFor } from './stage-session.ts'
import type { StageLayers } from './stage-layers.ts'
import type { StageSession } from './stage-session.ts'
import type { OpenFrame } from '../protocols/infer.ts'

export interface StageAdmissionInit {
  modelId: string
  /** the weights version the layers are (64 hex characters); an OPEN pinning another is refused WRONG_VERSION; undefined: any pin is refused */
  weightsVersion: string | undefined
  maxSessions: number
  maxCachePositions: number
  /** positions granted to an OPEN that asks for 0, and the most one may ask for */
  defaultMaxLength: number
  /** the share of sessions and cache positions priority 0, 1, 2 may fill */
  admitShare: readonly number[]
}

export interface StageAdmissionComponents {
  layers: Pick<StageLayers, 'config' | 'start' | 'end' | 'hasHead' | 'createSession'>
  /** false while the server is stopped or stopping: every OPEN is BUSY */
  isStarted(): boolean
}

/** What became of an OPEN: the session is open (its KV cache created, its room reserved), BUSY, or refused with a wire code. */
export type AdmissionResult =
  | { status: 'open', maxLength: number, hiddenSize: number }
  | { status: 'busy', message: string }
  | { status: 'rejected', code: InferErrorCode, message: string }

/** Admission counters (part of StageStats). */
export interface AdmissionCounters {
  peakSessions: number
  peakReservedPositions: number
  opened: number
  busy: number
  rejected: number
}

export class StageAdmission {
  /** every session of the server, open or awaiting OPEN */
  readonly sessions: Set<StageSession>
  readonly counters: AdmissionCounters
  private readonly init: StageAdmissionInit
  private readonly components: StageAdmissionComponents
  /** cache positions reserved by open sessions, in whole-span positions */
  private reservedPositions: number

  constructor (components: StageAdmissionComponents, init: StageAdmissionInit) {
    this.components = components
    this.init = init
    this.sessions = new Set()
    this.counters = { peakSessions: 0, peakReservedPositions: 0, opened: 0, busy: 0, rejected: 0 }
    this.reservedPositions = 0
  }

  get reserved (): number {
    return this.reservedPositions
  }

  /** Sessions past OPEN and not released. */
  get openSessions (): number {
    let open = 0
    for (const s of this.sessions) {
      if (s.state === SessionState.OPEN) {
        open++
      }
    }
    return open
  }

  /** A new channel's session, awaiting OPEN. */
  add (s: StageSession): void {
    this.sessions.add(s)
  }

  /**
   * Decides on `frame` for `s` (awaiting OPEN). When open, `s` is OPEN with
   * its KV cache and its room is reserved; when BUSY, `s` is released; when
   * rejected, the caller ends it.
   */
  admit (s: StageSession, frame: OpenFrame): AdmissionResult {
    const reject = (code: InferErrorCode, message: string): AdmissionResult => {
      this.counters.rejected++
      return { status: 'rejected', code, message }
    }
    const { start, end } = this.components.layers
    const refusal = this.refusal(frame)
    if (refusal != null) {
      return reject(refusal.code, refusal.message)
    }
    const maxLength = frame.maxLength === 0 ? this.init.defaultMaxLength : frame.maxLength
    if (maxLength > this.init.defaultMaxLength) {
      return reject(InferErrorCode.TOO_LONG, `at most ${this.init.defaultMaxLength} positions per session, asked for ${maxLength}`)
    }
    const open = this.openSessions
    // lower priorities fill only their share, so urgent sessions find room (an idle stage admits anyone)
    const share = open === 0 ? 1 : Math.min(1, this.init.admitShare[frame.priority] ?? 1)
    const sessionRoom = Math.floor(this.init.maxSessions * share)
    const cacheRoom = Math.floor(this.init.maxCachePositions * share)
    const layerShare = (frame.end - frame.start) / (end - start)
    const cost = cachePositionsFor(maxLength, layerShare)
    const reserved = this.reservedPositions
    if (!this.components.isStarted() || open >= sessionRoom || reserved + cost > cacheRoom || reserved + cost > this.init.maxCachePositions) {
      this.counters.busy++
      this.release(s)
      const of = share < 1 ? ` (priority ${frame.priority} may fill ${Math.round(share * 100)}%)` : ''
      const message = open >= sessionRoom
        ? `${open} of ${this.init.maxSessions} sessions in use${of}`
        : `${Math.max(0, cacheRoom - reserved)} cache positions free, ${cost} asked for${of}`
      return { status: 'busy', message }
    }
    s.state = SessionState.OPEN
    s.sessionId = frame.sessionId
    s.priority = frame.priority
    s.flags = frame.flags
    s.maxLength = maxLength
    s.layerShare = layerShare
    s.kv = this.components.layers.createSession({ start: frame.start, end: frame.end })
    this.reservedPositions += cost
    this.counters.opened++
    this.counters.peakReservedPositions = Math.max(this.counters.peakReservedPositions, this.reservedPositions)
    this.counters.peakSessions = Math.max(this.counters.peakSessions, open + 1)
    return { status: 'open', maxLength, hiddenSize: this.components.layers.config.hiddenSize }
  }

  /** Why this stage cannot serve what `frame` asks for (wire version, model, weights version, layers, head), or undefined. */
  private refusal (frame: OpenFrame): { code: InferErrorCode, message: string } | undefined {
    const { start, end, hasHead } = this.components.layers
    if (frame.version !== INFER_WIRE_VERSION) {
      return { code: InferErrorCode.UNSUPPORTED_VERSION, message: `wire version ${frame.version} is not ${INFER_WIRE_VERSION}` }
    }
    if (frame.modelId !== this.init.modelId) {
      return { code: InferErrorCode.WRONG_MODEL, message: `this stage serves model ${this.init.modelId}, not ${frame.modelId}` }
    }
    const served = this.init.weightsVersion
    if (frame.weightsVersion != null && frame.weightsVersion !== served) {
      return { code: InferErrorCode.WRONG_VERSION, message: `this stage serves ${served != null ? `weights version ${served}` : 'no named weights version'} of model ${this.init.modelId}, not ${frame.weightsVersion}` }
    }
    if (frame.start < start || frame.end > end || frame.start >= frame.end) {
      return { code: InferErrorCode.WRONG_RANGE, message: `this stage holds layers [${start}, ${end}): [${frame.start}, ${frame.end}) is not a non-empty part of them` }
    }
    if ((frame.flags & OpenFlags.LOGITS) !== 0 && (!hasHead || frame.end !== end)) {
      return { code: InferErrorCode.WRONG_RANGE, message: hasHead ? `logits come after layer ${end - 1}, the session ends at ${frame.end}` : 'this stage does not hold the head' }
    }
    return undefined
  }

  /**
   * Ends a session on this stage: its cache room and slot are free when this
   * returns, and its channel delivers nothing more (what it was receiving is
   * dropped now, not when a last ERROR / BUSY has gone out).
   */
  release (s: StageSession): void {
    if (!this.sessions.has(s)) {
      return
    }
    this.sessions.delete(s)
    s.frames.stopReading()
    if (s.state === SessionState.OPEN) {
      this.reservedPositions -= s.reserved
    }
    s.release()
  }
}
