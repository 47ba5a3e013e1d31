/**
 * `/bly/record/1.0.0`: ask a peer directly for its live node record.
 * Request: one length-prefixed frame holding the 32-byte model id.
 * Response: one length-prefixed frame holding the signed node record, or an
 * empty frame when the peer does not announce that model. One request per
 * stream; both sides close after the response.
 */
import { lpStream } from '@libp2p/utils'
import { MODEL_ID_LENGTH } from '../../protocols/node-record.ts'
import { ANNOUNCER_DEFAULTS, NODE_RECORD_LIMITS, RECORD_PROTOCOL } from './constants.ts'
import { RecordError, RecordErrorCode } from './errors.ts'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

/** Returns the signed record to serve for `modelId`, or undefined when not announcing it. */
export type RecordSource = (modelId: Uint8Array) => Promise<Uint8Array | undefined>

export interface RecordServerInit {
  /** an inbound request must arrive within this time (default ANNOUNCER_DEFAULTS.serverTimeoutMs) */
  timeoutMs?: number
  /** protocol id (default RECORD_PROTOCOL) */
  protocol?: string
}

/** Serves RECORD_PROTOCOL from a RecordSource. */
export class RecordServer {
  private readonly libp2p: Libp2p
  private readonly source: RecordSource
  private readonly timeoutMs: number
  private readonly protocol: string
  private started: boolean

  constructor (libp2p: Libp2p, source: RecordSource, init: RecordServerInit = {}) {
    this.libp2p = libp2p
    this.source = source
    this.timeoutMs = init.timeoutMs ?? ANNOUNCER_DEFAULTS.serverTimeoutMs
    this.protocol = init.protocol ?? RECORD_PROTOCOL
    this.started = false
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    await this.libp2p.handle(this.protocol, async (stream) => {
      await this.serve(stream)
    })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    await this.libp2p.unhandle(this.protocol)
  }

  private async serve (stream: Stream): Promise<void> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    try {
      const lp = lpStream(stream, { maxDataLength: MODEL_ID_LENGTH })
      const request = (await lp.read({ signal })).subarray()
      if (request.length !== MODEL_ID_LENGTH) {
        throw new RecordError(RecordErrorCode.ENCODING, `record request is ${request.length} bytes, expected ${MODEL_ID_LENGTH}`)
      }
      const record = this.started ? await this.source(request) : undefined
      await lp.write(record ?? new Uint8Array(0), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}

export interface RequestNodeRecordOptions {
  signal?: AbortSignal
  /** protocol id (default RECORD_PROTOCOL) */
  protocol?: string
}

/**
 * Ask `peerId` for its signed node record of `modelId` (dialling when not
 * connected). Returns the raw signed bytes, unverified; throws
 * ERR_RECORD_NOT_FOUND when the peer answers that it does not announce the model.
 */
export async function requestNodeRecord (libp2p: Libp2p, peerId: PeerId, modelId: Uint8Array, options: RequestNodeRecordOptions = {}): Promise<Uint8Array> {
  if (modelId.length !== MODEL_ID_LENGTH) {
    throw new RecordError(RecordErrorCode.INVALID_ARGUMENT, `model id must be ${MODEL_ID_LENGTH} bytes`)
  }
  const stream = await libp2p.dialProtocol(peerId, options.protocol ?? RECORD_PROTOCOL, { signal: options.signal })
  try {
    const lp = lpStream(stream, { maxDataLength: NODE_RECORD_LIMITS.maxRecordBytes })
    await lp.write(modelId, { signal: options.signal })
    const response = (await lp.read({ signal: options.signal })).subarray()
    await stream.close({ signal: options.signal }).catch(() => {})
    if (response.length === 0) {
      throw new RecordError(RecordErrorCode.NOT_FOUND, `${peerId.toString()} does not announce this model`)
    }
    return response
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}
