/**
 * What a pipeline session drives per hop: a StageClient to the hop's peer,
 * or a stage the client's own process serves (openStage). A stage that
 * would not open stands as a FailedStage until failover replaces it;
 * dropStage gives up on one.
 */
import { StageClient } from './stage-client.ts'
import type { ResolvedHop } from './route.ts'
import type { StepOptions } from './stage-client.ts'
import type { AbortOptions, Libp2p } from '@libp2p/interface'

/** What a session drives per hop: a StageClient, or a stage run in this process (openStage). */
export interface PipelineStage {
  forward(data: Float32Array, rows: number, cols: number, startPos: number, options?: StepOptions): Promise<{ rows: number, cols: number, startPos: number, data: Float32Array }>
  truncate(length: number): Promise<void>
  close(): Promise<void>
}

/** What opening a stage needs of the pipeline client's options. */
export interface StageOpenInit {
  libp2p: Pick<Libp2p, 'dial' | 'peerStore'>
  modelId: string
  /** the weights version the stages must serve (OPEN pins it) */
  weightsVersion?: string
  protocol?: string
  maxLength: number
  priority: number
  openTimeoutMs: number
  stepTimeoutMs: number
  maxFrameBytes: number
  directChannel: boolean
  /** a stage this process serves itself for `hop`, or undefined to dial the hop's peer */
  openStage?(hop: ResolvedHop, sessionId: number): PipelineStage | undefined
}

/**
 * Opens the stage of `hop` at route position `index` for session
 * `sessionId`: the process's own when openStage gives one, else a
 * StageClient (the hop's addresses merged into the peer store first).
 */
export async function openPipelineStage (init: StageOpenInit, hop: ResolvedHop, index: number, sessionId: number, options: AbortOptions): Promise<PipelineStage> {
  const own = init.openStage?.(hop, sessionId)
  if (own != null) {
    return own
  }
  if (hop.multiaddrs.length > 0) {
    await init.libp2p.peerStore.merge(hop.peerId, { multiaddrs: hop.multiaddrs })
  }
  return StageClient.open({
    libp2p: init.libp2p,
    peer: hop.peerId,
    modelId: init.modelId,
    ...(init.weightsVersion != null ? { weightsVersion: init.weightsVersion } : {}),
    start: hop.start,
    end: hop.end,
    sessionId,
    stage: index,
    protocol: init.protocol,
    maxLength: init.maxLength,
    priority: init.priority,
    openTimeoutMs: init.openTimeoutMs,
    stepTimeoutMs: init.stepTimeoutMs,
    maxFrameBytes: init.maxFrameBytes,
    directChannel: init.directChannel,
    signal: options.signal
  })
}

/** Stands for a stage that would not open: its first step fails with the open error (and gets replaced). */
export class FailedStage implements PipelineStage {
  private readonly error: Error

  constructor (error: Error) {
    this.error = error
  }

  async forward (): Promise<never> {
    throw this.error
  }

  async truncate (): Promise<void> {}

  async close (): Promise<void> {}
}

/** Gives up on a failed stage: aborts a StageClient's stream (its answers can no longer be trusted), else closes it. */
export function dropStage (stage: PipelineStage, err: Error): void {
  if (stage instanceof StageClient) {
    stage.abort(err)
  } else {
    stage.close().catch(() => {})
  }
}
