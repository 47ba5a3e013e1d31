/**
 * A pipeline stage run in this process: the hop of a route that names this
 * node's own span (libp2p does not dial itself). Same contract as a remote
 * StageClient: forward hidden states at positions, truncate, close; its own
 * KV cache per session, on the LayerRange the stage server also serves, for
 * the hop's layers (the whole span or a sub-range of it). `onClose` is called
 * once, when the stage closes (the span server counts the sessions on its
 * weights so it frees them only after the last one).
 */
import { PipelineError, PipelineErrorCode } from '../pipeline/errors.ts'
import type { PipelineStage } from '../pipeline/pipeline-stage.ts'
import type { StageKv, StageLayers } from '../pipeline/stage-layers.ts'
import type { AbortOptions } from '@libp2p/interface'

export class LocalStage implements PipelineStage {
  private readonly layers: StageLayers
  private session: StageKv | undefined
  private onClose?: () => void

  constructor (layers: StageLayers, range?: { start: number, end: number }, onClose?: () => void) {
    this.layers = layers
    this.session = layers.createSession(range)
    this.onClose = onClose
  }

  async forward (data: Float32Array, rows: number, cols: number, startPos: number, options: AbortOptions = {}): Promise<{ rows: number, cols: number, startPos: number, data: Float32Array }> {
    options.signal?.throwIfAborted()
    const session = this.session
    if (session == null) {
      throw new PipelineError(PipelineErrorCode.SESSION_CLOSED, 'local stage is closed')
    }
    if (cols !== this.layers.config.hiddenSize || data.length !== rows * cols) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `local stage got [${rows}, ${cols}] (${data.length} values), hidden size is ${this.layers.config.hiddenSize}`)
    }
    if (startPos !== session.length) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `local stage holds ${session.length} positions, got a step at ${startPos}`)
    }
    const out = await this.layers.forwardData(session, data, startPos)
    return { rows, cols, startPos, data: out }
  }

  async truncate (length: number): Promise<void> {
    this.session?.truncate(length)
  }

  async close (): Promise<void> {
    this.session?.dispose()
    this.session = undefined
    const onClose = this.onClose
    this.onClose = undefined
    onClose?.()
  }
}
