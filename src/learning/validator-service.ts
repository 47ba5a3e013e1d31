/**
 * The validator service of a daemon: for every model whose current
 * validator set holds this node's key, it finds the proposals this key has
 * not attested, makes sure the payloads the work needs are stored (fetching
 * them through the network when it can), measures each proposal
 * (validator.ts) and publishes the Attestation through the daemon's
 * publishing store (gossip).
 *
 * What it attests, per pending proposal of the fold not attested by this
 * key (by id ascending): on the live version in the current governance
 * state: measured; on a past version of the history, or naming a past
 * governance state: `stale`, at once; on a version this node does not know
 * (not synced yet): put off. It accepts at most one proposal per base
 * version: while its accept of another proposal on the same base is
 * pending, it puts the next one off (quorum intersection then keeps two
 * proposals on one base from both being accepted).
 *
 * Ordering and durability: one proposal at a time, in the background
 * (start() returns at once; IPC never waits on it). Before each eval window
 * it yields to the event loop and, while `busy()` says inference is
 * running, waits up to `maxDeferMs`, so serving comes first. What this key
 * attested is read from the fold every pass, so a restart never attests a
 * proposal twice (an attestation is one atomic createBlock). A local
 * failure (a payload no peer serves, an error) is recorded in status,
 * logged, and that proposal retried after `retryMs`.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadModelManifest } from '../model/chain-loader.ts'
import { fromHex } from '../protocols/hex.ts'
import { Reason, Verdict } from '../protocols/learning-blocks.ts'
import { DEFAULT_VALIDATOR_MAX_DEFER_MS, DEFAULT_VALIDATOR_POLL_MS, DEFAULT_VALIDATOR_RETRY_MS, VALIDATOR_BUSY_POLL_MS } from './constants.ts'
import { EvalWindowsCache } from './fold/eval-windows.ts'
import { isValidator } from './fold/query.ts'
import { foldOf, modelIds } from './pol-models.ts'
import { DeltaBodyIndex, checkBase, checkSizes } from './validator-checks.ts'
import { attestProposal } from './validator.ts'
import { versionBlocks } from './version-weights.ts'
import type { Hex, ModelFold, ProposalExplain } from './fold/types.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { ValidatorStatusJson } from '../protocols/ipc-learning.ts'
import type { ComponentLogger, Logger } from '@libp2p/interface'

export interface ValidatorServiceComponents {
  /** the store blocks are written to: the daemon's publishing view (createBlock gossips) */
  store: ChainStoreApi
  /** this node's key */
  signer: BlockSigner
  logger: ComponentLogger
  /** the daemon's eval windows cache (a private one when not given) */
  evalWindows?: EvalWindowsCache
  /** fetch a stored block's missing payload from peers (net.sync.fetchPayload); without it the service waits for sync */
  fetchPayload?(id: Uint8Array, options: { signal?: AbortSignal }): Promise<void>
  /** true while inference is running (generations, served sessions): validation defers to it */
  busy?(): boolean
}

export interface ValidatorServiceInit {
  /** look for work this often (default DEFAULT_VALIDATOR_POLL_MS) */
  pollMs?: number
  /** retry a proposal after a local failure after this long (default DEFAULT_VALIDATOR_RETRY_MS) */
  retryMs?: number
  /** wait at most this long per eval window while busy() (default DEFAULT_VALIDATOR_MAX_DEFER_MS) */
  maxDeferMs?: number
  /** tensor-parallel worker threads for the forward passes (default 0) */
  workers?: number
}

/** What to do with one proposal now. */
type Plan =
  | { kind: 'measure' }
  | { kind: 'stale' }
  | { kind: 'wait', why: 'unknown-base' | 'own-accept-pending' }

function errorFields (err: any): { code: string, message: string } {
  return { code: String(err?.code ?? err?.name ?? 'ERR'), message: String(err?.message ?? err) }
}

/** What this key should do with each pending proposal it has not attested, by id ascending (see the file comment). */
export function planWork (fold: ModelFold, key: Hex): Array<{ proposal: ProposalExplain, plan: Plan }> {
  const k = key.toLowerCase()
  const out: Array<{ proposal: ProposalExplain, plan: Plan }> = []
  const myPendingAccepts = new Set(fold.proposals
    .filter(p => p.status === 'pending' && p.attestations.some(a => a.validator === k && a.verdict === Verdict.ACCEPT))
    .map(p => p.base))
  for (const p of fold.proposals) {
    if (p.status !== 'pending' || p.attestations.some(a => a.validator === k)) {
      continue
    }
    const current = p.base === fold.live.id && p.governance === fold.governance.current.id
    if (current) {
      out.push({ proposal: p, plan: myPendingAccepts.has(p.base) ? { kind: 'wait', why: 'own-accept-pending' } : { kind: 'measure' } })
    } else if (fold.versions.some(v => v.id === p.base)) {
      out.push({ proposal: p, plan: { kind: 'stale' } })
    } else {
      out.push({ proposal: p, plan: { kind: 'wait', why: 'unknown-base' } })
    }
  }
  return out
}

export class ValidatorService {
  private readonly components: ValidatorServiceComponents
  private readonly pollMs: number
  private readonly retryMs: number
  private readonly maxDeferMs: number
  private readonly workers: number
  private readonly log: Logger
  private readonly evalWindows: EvalWindowsCache
  private readonly bodies: DeltaBodyIndex
  private readonly keyHex: Hex
  /** proposal id -> when it may be tried again */
  private readonly retryAt: Map<Hex, number>
  private controller?: AbortController
  private loop?: Promise<void>
  private wake?: () => void
  private kicked: boolean
  private state: Omit<ValidatorStatusJson, 'key'>

  constructor (components: ValidatorServiceComponents, init: ValidatorServiceInit = {}) {
    this.components = components
    this.pollMs = init.pollMs ?? DEFAULT_VALIDATOR_POLL_MS
    this.retryMs = init.retryMs ?? DEFAULT_VALIDATOR_RETRY_MS
    this.maxDeferMs = init.maxDeferMs ?? DEFAULT_VALIDATOR_MAX_DEFER_MS
    this.workers = init.workers ?? 0
    this.log = components.logger.forComponent('bly:learning:validator')
    this.evalWindows = components.evalWindows ?? new EvalWindowsCache({ store: components.store })
    this.bodies = new DeltaBodyIndex()
    this.keyHex = Buffer.from(components.signer.publicKey).toString('hex')
    this.retryAt = new Map()
    this.kicked = false
    this.state = { models: [], validating: null, attested: 0, last: null, lastError: null, waiting: [], deferrals: 0, deferredMs: 0 }
  }

  get isStarted (): boolean {
    return this.controller != null
  }

  /** Starts the background loop (returns at once). */
  start (): void {
    if (this.controller != null) {
      return
    }
    const controller = new AbortController()
    this.controller = controller
    this.loop = this.run(controller.signal)
  }

  /** Stops the loop, aborting a measurement in progress (nothing is published for it), and waits for it to end. */
  async stop (): Promise<void> {
    const controller = this.controller
    if (controller == null) {
      return
    }
    this.controller = undefined
    controller.abort()
    this.wake?.()
    await this.loop
    this.loop = undefined
  }

  /** Look for work now (a block arrived, a proposal was made here). */
  kick (): void {
    this.kicked = true
    this.wake?.()
  }

  status (): ValidatorStatusJson {
    return { key: this.keyHex, ...this.state, waiting: [...this.state.waiting], models: [...this.state.models] }
  }

  private async run (signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let worked = false
      try {
        worked = await this.pass(signal)
      } catch (err: any) {
        if (signal.aborted) {
          break
        }
        this.state.lastError = { ...errorFields(err), at: Date.now() }
        this.log.error('validator pass failed: %s', err?.message ?? err)
      }
      if (!worked && !signal.aborted) {
        await this.idle()
      }
    }
  }

  /** Sleeps pollMs, or until kick() or stop(). */
  private async idle (): Promise<void> {
    if (this.kicked) {
      this.kicked = false
      return
    }
    await new Promise<void>(resolve => {
      const timer = setTimeout(done, this.pollMs)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
    this.wake = undefined
    this.kicked = false
  }

  /**
   * One pass over every model: attests at most one proposal (then the fold
   * has changed, so the next pass starts over). Returns whether it attested.
   * Exposed for tests and tools that drive the service by hand.
   */
  async pass (signal?: AbortSignal): Promise<boolean> {
    const { store } = this.components
    const models: string[] = []
    const waiting: ValidatorStatusJson['waiting'] = []
    try {
      for (const id of await modelIds(store)) {
        const manifestBlock = await store.get(id)
        if (manifestBlock?.payloadComplete !== true) {
          continue
        }
        const fold = await foldOf(store, id, this.evalWindows)
        if (fold.genesis.status !== 'ok' || !isValidator(fold, this.keyHex)) {
          continue
        }
        models.push(fold.model)
        for (const { proposal, plan } of planWork(fold, this.keyHex)) {
          signal?.throwIfAborted()
          if (plan.kind === 'wait') {
            waiting.push({ model: fold.model, proposal: proposal.id, why: plan.why })
            continue
          }
          const retry = this.retryAt.get(proposal.id)
          if (retry != null && retry > Date.now()) {
            waiting.push({ model: fold.model, proposal: proposal.id, why: 'retry' })
            continue
          }
          const result = await this.work(fold, proposal, plan.kind, signal)
          if (result === 'attested') {
            return true
          }
          waiting.push({ model: fold.model, proposal: proposal.id, why: result })
        }
      }
      return false
    } finally {
      this.state.models = models
      this.state.waiting = waiting
    }
  }

  /** Fetches (or finds) every payload in `ids`; the ids still missing afterwards. */
  private async ensurePayloads (ids: Uint8Array[], signal?: AbortSignal): Promise<string[]> {
    const { store, fetchPayload } = this.components
    const missing: string[] = []
    for (const id of ids) {
      const block = await store.get(id)
      if (block?.payloadComplete === true) {
        continue
      }
      if (block != null && fetchPayload != null) {
        try {
          await fetchPayload(id, { signal })
          continue
        } catch (err: any) {
          signal?.throwIfAborted()
          this.log('payload %s not fetched: %s', Buffer.from(id).toString('hex'), err?.message ?? err)
        }
      }
      missing.push(Buffer.from(id).toString('hex'))
    }
    return missing
  }

  /** The payloads measuring `proposal` reads: its deltas, its datasets, the live version's layers and deltas. */
  private async neededPayloads (manifest: ModelManifest, fold: ModelFold, proposal: ProposalExplain): Promise<Uint8Array[]> {
    const regression = fold.governance.history.find(g => g.id === proposal.governance)?.params?.regressionDatasets ?? []
    const { layers, deltas } = await versionBlocks(this.components.store, manifest, fold.live)
    return [
      ...proposal.deltas.map(d => fromHex(d.id)),
      fromHex(proposal.dataset),
      ...regression.map(fromHex),
      ...layers.flatMap(b => b != null ? [b.id] : []),
      ...deltas.map(fromHex)
    ]
  }

  /** Measures (or rejects as stale) one proposal and publishes the attestation; or says why it cannot yet. */
  private async work (fold: ModelFold, proposal: ProposalExplain, kind: 'measure' | 'stale', signal?: AbortSignal): Promise<'attested' | 'payload-missing' | 'error'> {
    const { store, signer } = this.components
    const since = Date.now()
    this.state.validating = { model: fold.model, proposal: proposal.id, phase: 'payloads', since }
    try {
      const manifest = await loadModelManifest(store, fromHex(fold.model))
      // a stale or oversize proposal is rejected from its headers: nothing to fetch
      const early = kind === 'stale' ? undefined : (checkBase(fold, proposal) ?? await checkSizes(store, manifest, proposal))
      if (kind === 'measure' && early == null) {
        const missing = await this.ensurePayloads(await this.neededPayloads(manifest, fold, proposal), signal)
        if (missing.length > 0) {
          this.retryAt.set(proposal.id, Date.now() + this.retryMs)
          this.state.lastError = { model: fold.model, proposal: proposal.id, code: 'ERR_LEARNING_PAYLOAD_MISSING', message: `${missing.length} payload(s) not stored and not fetched: ${missing.slice(0, 4).join(', ')}`, at: Date.now() }
          return 'payload-missing'
        }
      }
      const t0 = performance.now()
      const { block, outcome } = await attestProposal({
        store,
        signer,
        manifest,
        fold,
        proposal,
        bodies: this.bodies,
        evalWindows: this.evalWindows,
        pause: async () => this.pause(signal),
        workers: this.workers,
        ...(signal != null ? { signal } : {}),
        onPhase: phase => {
          this.state.validating = { model: fold.model, proposal: proposal.id, phase, since }
        }
      })
      const ms = performance.now() - t0
      const verdict = outcome.reason === Reason.OK ? Verdict.ACCEPT : Verdict.REJECT
      this.state.attested++
      this.state.last = { model: fold.model, proposal: proposal.id, attestation: Buffer.from(block.id).toString('hex'), verdict, reason: outcome.reason, ms: Math.round(ms), at: Date.now() }
      this.retryAt.delete(proposal.id)
      this.log('attested proposal %s of model %s: %s (%s): %s in %d ms', proposal.id, fold.model, verdict, outcome.reason, outcome.detail, Math.round(ms))
      return 'attested'
    } catch (err: any) {
      signal?.throwIfAborted()
      this.retryAt.set(proposal.id, Date.now() + this.retryMs)
      this.state.lastError = { model: fold.model, proposal: proposal.id, ...errorFields(err), at: Date.now() }
      this.log.error('validating proposal %s of model %s failed: %s', proposal.id, fold.model, err?.message ?? err)
      return 'error'
    } finally {
      this.state.validating = null
    }
  }

  /** Before each eval window: yield to the event loop; while inference is busy, wait (at most maxDeferMs). */
  private async pause (signal?: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => setImmediate(resolve))
    const busy = this.components.busy
    if (busy == null || !busy()) {
      return
    }
    const start = performance.now()
    this.state.deferrals++
    while (busy() && performance.now() - start < this.maxDeferMs) {
      signal?.throwIfAborted()
      await sleep(VALIDATOR_BUSY_POLL_MS)
    }
    this.state.deferredMs += Math.round(performance.now() - start)
  }
}

export function createValidatorService (components: ValidatorServiceComponents, init: ValidatorServiceInit = {}): ValidatorService {
  return new ValidatorService(components, init)
}
