/**
 * Runs a generation session through a route of remote stages with
 * client-driven chaining: the client embeds the tokens, sends the hidden
 * states to stage 1, takes its RESULT and sends it to stage 2, ... and runs
 * the final norm + head itself. It keeps every input it sent to every stage
 * (for replay onto another peer later). It is a TokenModel, so generate()
 * and its Sampler drive it unchanged.
 */
import { randomInt } from 'node:crypto'
import { generate } from '../model/generate.ts'
import { PIPELINE_CLIENT_DEFAULTS } from './constants.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { resolveRoute } from './route.ts'
import { StageClient } from './stage-client.ts'
import { embedData, logitsData } from './stage-layers.ts'
import type { ResolvedHop, RouteHop } from './route.ts'
import type { LocalEnds } from './stage-layers.ts'
import type { GenerateOptions, GeneratedToken, GenerationResult, TokenModel, TokenSession } from '../model/generate.ts'
import type { AbortOptions, Libp2p } from '@libp2p/interface'

export interface PipelineClientInit {
  libp2p: Pick<Libp2p, 'dialProtocol' | 'peerStore'>
  /** the model id the stages serve */
  modelId: string
  /** the client's own embedding, final norm and head (e.g. LayerRange.load(config, source, { start: 0, end: 0, embedding: true, head: true })) */
  local: LocalEnds
  /** stages covering decoder layers [0, numLayers) in order */
  route: RouteHop[]
  protocol?: string
  maxLength?: number
  priority?: number
  openTimeoutMs?: number
  stepTimeoutMs?: number
  maxFrameBytes?: number
  /**
   * A stage for a hop this process serves itself (libp2p cannot dial its own
   * peer id); undefined = open a StageClient to the hop's peer as usual.
   */
  openStage?(hop: ResolvedHop, sessionId: number): PipelineStage | undefined
}

/** What a session drives per hop: a StageClient, or a stage run in this process (openStage). */
export interface PipelineStage {
  forward(data: Float32Array, rows: number, cols: number, startPos: number, options?: AbortOptions): Promise<{ rows: number, cols: number, startPos: number, data: Float32Array }>
  truncate(length: number): Promise<void>
  close(): Promise<void>
}

/** One FORWARD sent to a stage, kept for replay. */
export interface StageInput {
  startPos: number
  rows: number
  /** [rows, hidden] f32 */
  data: Float32Array
}

export interface StepLogits {
  /** [rows, vocab] f32: the last position's logits, or every position's with allRows */
  logits: Float32Array
  rows: number
  vocab: number
}

export interface PipelineSessionStats {
  steps: number
  positions: number
  /** per stage: milliseconds from sending a FORWARD to its RESULT (compute + transport) */
  stageMs: number[]
  /** milliseconds in the local embedding + head */
  localMs: number
}

export class PipelineSession implements TokenSession {
  readonly sessionId: number
  readonly stats: PipelineSessionStats
  private readonly client: PipelineClient
  private readonly hops: ResolvedHop[]
  private readonly history: StageInput[][]
  private stages: PipelineStage[]
  private opening?: Promise<void>
  private chain: Promise<unknown>
  private pos: number
  private closed: boolean

  constructor (client: PipelineClient, hops: ResolvedHop[]) {
    this.client = client
    this.hops = hops
    this.sessionId = randomInt(1, 0xffffffff)
    this.history = hops.map(() => [])
    this.stages = []
    this.chain = Promise.resolve()
    this.pos = 0
    this.closed = false
    this.stats = { steps: 0, positions: 0, stageMs: hops.map(() => 0), localMs: 0 }
  }

  /** Positions the stages have cached. */
  get length (): number {
    return this.pos
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** The FORWARDs sent to stage `index` that are still part of the session (after truncations). */
  inputs (index: number): readonly StageInput[] {
    return this.history[index] ?? []
  }

  /** Opens one stream per stage (all at once); called by the first step when not called before. */
  async open (options: AbortOptions = {}): Promise<void> {
    this.assertOpen()
    this.opening ??= this.openAll(options).catch(async (err) => {
      this.opening = undefined
      throw err
    })
    return this.opening
  }

  private async openAll (options: AbortOptions): Promise<void> {
    const c = this.client.init
    const opened = await Promise.allSettled(this.hops.map(async (hop, i): Promise<PipelineStage> => {
      const own = c.openStage?.(hop, this.sessionId)
      if (own != null) {
        return own
      }
      if (hop.multiaddrs.length > 0) {
        await c.libp2p.peerStore.merge(hop.peerId, { multiaddrs: hop.multiaddrs })
      }
      return StageClient.open({
        libp2p: c.libp2p,
        peer: hop.peerId,
        modelId: c.modelId,
        start: hop.start,
        end: hop.end,
        sessionId: this.sessionId,
        stage: i,
        protocol: c.protocol,
        maxLength: c.maxLength,
        priority: c.priority,
        openTimeoutMs: c.openTimeoutMs,
        stepTimeoutMs: c.stepTimeoutMs,
        maxFrameBytes: c.maxFrameBytes,
        signal: options.signal
      })
    }))
    const stages = opened.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    const failed = opened.find(r => r.status === 'rejected')
    if (failed != null || this.closed) {
      await Promise.allSettled(stages.map(async s => s.close()))
      throw failed != null ? (failed as PromiseRejectedResult).reason : new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'session closed while opening')
    }
    this.stages = stages
  }

  /**
   * Runs new token ids through every stage at the next positions; resolves
   * the logits of the last position (or of every position with allRows).
   */
  async forward (ids: number[], options: AbortOptions & { allRows?: boolean } = {}): Promise<StepLogits> {
    return this.serial(async () => this.forwardNow(ids, options))
  }

  /** The next-token logits after feeding `ids` (TokenModel contract). */
  async nextLogits (ids: number[], options: AbortOptions = {}): Promise<Float32Array> {
    return (await this.forward(ids, options)).logits
  }

  /** Rewinds every stage's cache to `length` positions (rejected drafts, replay) and forgets the inputs past it. */
  async truncate (length: number): Promise<void> {
    return this.serial(async () => {
      if (!Number.isSafeInteger(length) || length < 0 || length > this.pos) {
        throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `cannot truncate a ${this.pos}-position session to ${length}`)
      }
      await this.open()
      await Promise.all(this.stages.map(async s => s.truncate(length)))
      const hidden = this.client.init.local.config.hiddenSize
      for (const list of this.history) {
        while (list.length > 0 && list[list.length - 1].startPos >= length) {
          list.pop()
        }
        const last = list[list.length - 1]
        if (last != null && last.startPos + last.rows > length) {
          const rows = length - last.startPos
          list[list.length - 1] = { startPos: last.startPos, rows, data: last.data.subarray(0, rows * hidden) }
        }
      }
      this.pos = length
    })
  }

  /** CLOSEs every stage session (idempotent). */
  async close (): Promise<void> {
    this.closed = true
    await this.opening?.catch(() => {})
    const stages = this.stages
    this.stages = []
    await Promise.allSettled(stages.map(async s => s.close()))
  }

  /** TokenSession: closes in the background. */
  dispose (): void {
    void this.close()
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  private assertOpen (): void {
    if (this.closed) {
      throw new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'pipeline session is closed')
    }
  }

  private async forwardNow (ids: number[], options: AbortOptions & { allRows?: boolean }): Promise<StepLogits> {
    this.assertOpen()
    if (ids.length === 0) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'no token ids')
    }
    await this.open(options)
    const { local } = this.client.init
    const { hiddenSize, vocabSize } = local.config
    const rows = ids.length
    const startPos = this.pos
    let t = performance.now()
    let hidden = await embedData(local, ids)
    this.stats.localMs += performance.now() - t
    for (let i = 0; i < this.stages.length; i++) {
      this.history[i].push({ startPos, rows, data: hidden })
      t = performance.now()
      const r = await this.stages[i].forward(hidden, rows, hiddenSize, startPos, options)
      this.stats.stageMs[i] += performance.now() - t
      if (r.rows !== rows || r.cols !== hiddenSize || r.startPos !== startPos) {
        throw new PipelineError(PipelineErrorCode.BAD_FRAME, `stage ${i} answered [${r.rows}, ${r.cols}] at ${r.startPos}, expected [${rows}, ${hiddenSize}] at ${startPos}`, { stage: i })
      }
      hidden = r.data
    }
    this.pos += rows
    this.stats.steps++
    this.stats.positions += rows
    t = performance.now()
    const from = options.allRows === true ? 0 : rows - 1
    const logits = await logitsData(local, hidden, rows, hiddenSize, from)
    this.stats.localMs += performance.now() - t
    return { logits, rows: rows - from, vocab: vocabSize }
  }
}

/**
 * A model whose decoder layers run on remote stages. createSession() is
 * cheap; the streams open on the session's first step.
 */
export class PipelineClient implements TokenModel<PipelineSession> {
  readonly init: Required<Omit<PipelineClientInit, 'protocol' | 'openStage'>> & Pick<PipelineClientInit, 'protocol' | 'openStage'>
  readonly route: ResolvedHop[]

  constructor (init: PipelineClientInit) {
    if (!init.local.hasEmbedding || !init.local.hasHead) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'the pipeline client needs the embedding and the head locally')
    }
    const d = PIPELINE_CLIENT_DEFAULTS
    this.init = {
      ...init,
      maxLength: init.maxLength ?? d.maxLength,
      priority: init.priority ?? d.priority,
      openTimeoutMs: init.openTimeoutMs ?? d.openTimeoutMs,
      stepTimeoutMs: init.stepTimeoutMs ?? d.stepTimeoutMs,
      maxFrameBytes: init.maxFrameBytes ?? d.maxFrameBytes
    }
    this.route = resolveRoute(init.route, init.local.config.numLayers)
  }

  createSession (): PipelineSession {
    return new PipelineSession(this, this.route)
  }

  async nextLogits (session: PipelineSession, ids: number[]): Promise<Float32Array> {
    return session.nextLogits(ids)
  }
}

export function createPipelineClient (init: PipelineClientInit): PipelineClient {
  return new PipelineClient(init)
}

/**
 * Streams generated tokens through the pipeline: generate() with its Sampler,
 * stop rules and text hold-back, over a PipelineClient. The session's stage
 * streams are closed when the iterator finishes, throws or is abandoned.
 */
export async function * generateThroughPipeline (client: PipelineClient, prompt: number[], options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, GenerationResult, undefined> {
  return yield * generate(client, prompt, options)
}
