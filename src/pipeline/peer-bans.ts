/**
 * The peers one pipeline session gave up on, and its waits for room when
 * every holder it could use answered BUSY. A peer banned for anything but
 * BUSY stays banned for the session; one that only answered BUSY is tried
 * again after a back-off (waitForRoom), longer for lower priorities so the
 * most urgent sessions take the room that frees first.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { FailureReason } from './stage-failure.ts'
import type { FailureReasonValue } from './stage-failure.ts'
import type { AbortOptions } from '@libp2p/interface'

export interface PeerBansInit {
  /** the session's OPEN priority (0 background, 1 batch, 2 interactive) */
  priority: number
  /** the waits of one run of all-BUSY answers may add up to this much before RECOVERY_FAILED */
  busyWaitMs: number
  /** first back-off of an interactive session (batch waits 2x, background 4x; each later wait 1.5x longer) */
  busyBackoffMs: number
  /** longest single back-off */
  busyBackoffMaxMs: number
}

export class PeerBans {
  /** peers this session gave up on (peer id strings) */
  readonly banned: Set<string>
  /** how often this session waited for room because every holder it could use was BUSY */
  busyWaits: number
  private readonly init: PeerBansInit
  /** the banned peers that only answered BUSY: they are tried again after a back-off */
  private readonly busyPeers: Set<string>
  /** when the current run of BUSY waits began (undefined: not waiting) */
  private busySince?: number

  constructor (init: PeerBansInit) {
    this.init = init
    this.banned = new Set()
    this.busyPeers = new Set()
    this.busyWaits = 0
  }

  /** Some banned peer only answered BUSY: waiting may find room. */
  get anyBusy (): boolean {
    return this.busyPeers.size > 0
  }

  /** Gives up on `peer` for this session; one that only answered BUSY may be tried again after a back-off. */
  ban (peer: string, reason: FailureReasonValue): void {
    if (!this.banned.has(peer) && reason === FailureReason.BUSY) {
      this.busyPeers.add(peer)
    } else if (reason !== FailureReason.BUSY) {
      this.busyPeers.delete(peer)
    }
    this.banned.add(peer)
  }

  /** A step went through (or a stage was replaced): the current run of BUSY waits is over. */
  settled (): void {
    this.busySince = undefined
  }

  /**
   * Every holder this session could use is BUSY: back off, then lift the
   * bans of the busy peers. Throws RECOVERY_FAILED once the waits of this
   * run add up to more than busyWaitMs; `assertOpen` runs after the back-off,
   * before any ban is lifted.
   */
  async waitForRoom (what: string, assertOpen: () => void, options: AbortOptions): Promise<void> {
    const c = this.init
    const now = performance.now()
    this.busySince ??= now
    if (now - this.busySince > c.busyWaitMs) {
      throw new PipelineError(PipelineErrorCode.RECOVERY_FAILED, `every holder of ${what} stayed busy for ${Math.round(now - this.busySince)} ms`)
    }
    const level = Math.max(0, Math.min(2, 2 - c.priority))
    const ms = Math.min(c.busyBackoffMaxMs, c.busyBackoffMs * (2 ** level) * (1.5 ** Math.min(this.busyWaits, 16)))
    this.busyWaits++
    await sleep(ms * (0.5 + Math.random()), undefined, { signal: options.signal })
    assertOpen()
    for (const peer of this.busyPeers) {
      this.banned.delete(peer)
    }
    this.busyPeers.clear()
  }
}
