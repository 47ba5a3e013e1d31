/**
 * The requesting side of /bly/blocks/1.0.0 towards one peer: one long-lived
 * stream, opened on first use and reopened after it closes, carrying many
 * requests at once matched by request id. Every request has a timeout and
 * honours an AbortSignal; at most `maxInflight` are outstanding.
 */
import { SyncErrorCode } from '../protocols/block-sync.ts'
import { NetError, NetErrorCode } from './errors.ts'
import { FrameStream } from './frame-stream.ts'
import { Limiter } from './limiter.ts'
import { syncFrameCodec } from './sync-frames.ts'
import type { SyncFrame, SyncRequest, SyncResponse } from '../protocols/block-sync.ts'
import type { PeerId, Stream } from '@libp2p/interface'

export interface SyncClientInit {
  peerId: PeerId
  /** opens a new block-sync stream to the peer */
  openStream(signal: AbortSignal): Promise<Stream>
  maxMessageBytes: number
  idleTimeoutMs: number
  requestTimeoutMs: number
  maxInflight: number
}

export interface RequestOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

interface Pending {
  resolve(response: SyncResponse): void
  reject(err: Error): void
}

type ResponseOf<T extends SyncRequest['type']> =
  T extends 'get-tips' ? Extract<SyncResponse, { type: 'tips' }>
    : T extends 'get-headers' ? Extract<SyncResponse, { type: 'headers' }>
      : T extends 'get-have' ? Extract<SyncResponse, { type: 'have' }>
        : Extract<SyncResponse, { type: 'chunk' }>

const REMOTE_ERROR_CODES: Partial<Record<SyncErrorCode, NetErrorCode>> = {
  [SyncErrorCode.NOT_FOUND]: NetErrorCode.NOT_FOUND,
  [SyncErrorCode.BUSY]: NetErrorCode.BUSY
}

const EXPECTED_RESPONSE: Record<SyncRequest['type'], SyncResponse['type']> = {
  'get-tips': 'tips',
  'get-headers': 'headers',
  'get-have': 'have',
  'get-chunk': 'chunk'
}

export class SyncClient {
  readonly peerId: PeerId
  private readonly init: SyncClientInit
  private readonly limiter: Limiter
  private readonly pending: Map<number, Pending>
  private frames?: Promise<FrameStream<SyncFrame>>
  private nextId: number
  private closed: boolean

  constructor (init: SyncClientInit) {
    this.peerId = init.peerId
    this.init = init
    this.limiter = new Limiter(init.maxInflight)
    this.pending = new Map()
    this.nextId = 1
    this.closed = false
  }

  /** Send one request and wait for its response; error frames become NetErrors. */
  async request<T extends SyncRequest> (body: T, options: RequestOptions = {}): Promise<ResponseOf<T['type']>> {
    if (this.closed) {
      throw new NetError(NetErrorCode.NOT_STARTED, 'sync client is closed')
    }
    const timeoutMs = options.timeoutMs ?? this.init.requestTimeoutMs
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout])
    const release = await this.limiter.acquire(signal).catch((err: unknown) => {
      throw this.abortError(err, timeout, timeoutMs)
    })
    try {
      const frames = await this.getFrames(signal)
      const id = this.nextId
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1
      const { promise, resolve, reject } = Promise.withResolvers<SyncResponse>()
      const onAbort = (): void => {
        reject(this.abortError(signal.reason, timeout, timeoutMs))
      }
      this.pending.set(id, { resolve, reject })
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        if (signal.aborted) {
          onAbort()
        } else {
          frames.send({ id, body }).catch((err: Error) => {
            reject(new NetError(NetErrorCode.STREAM_CLOSED, `could not send to ${this.peerId}: ${err.message}`, { cause: err }))
          })
        }
        const response = await promise
        return this.check(body, response) as ResponseOf<T['type']>
      } finally {
        signal.removeEventListener('abort', onAbort)
        this.pending.delete(id)
        frames.touch()
      }
    } finally {
      release()
    }
  }

  /** Close the stream and fail every outstanding request. */
  async close (): Promise<void> {
    this.closed = true
    const frames = await this.frames?.catch(() => undefined)
    this.frames = undefined
    this.failAll(new NetError(NetErrorCode.STREAM_CLOSED, 'sync client closed'))
    await frames?.close()
  }

  private check (request: SyncRequest, response: SyncResponse): SyncResponse {
    if (response.type === 'error') {
      throw new NetError(REMOTE_ERROR_CODES[response.code] ?? NetErrorCode.REMOTE, `${this.peerId} answered ${request.type}: ${response.message}`)
    }
    if (response.type !== EXPECTED_RESPONSE[request.type]) {
      throw new NetError(NetErrorCode.BAD_MESSAGE, `${this.peerId} answered ${request.type} with ${response.type}`)
    }
    return response
  }

  private abortError (reason: unknown, timeout: AbortSignal, timeoutMs: number): Error {
    if (timeout.aborted) {
      return new NetError(NetErrorCode.TIMEOUT, `no response from ${this.peerId} within ${timeoutMs} ms`)
    }
    return reason instanceof Error ? reason : new Error(String(reason))
  }

  private async getFrames (signal: AbortSignal): Promise<FrameStream<SyncFrame>> {
    const known = this.frames
    const current = await known?.catch(() => undefined)
    if (current?.isOpen === true) {
      return current
    }
    if (this.frames !== known) {
      // another request started opening a stream meanwhile: share it
      return this.getFrames(signal)
    }
    const opening = this.open(signal)
    this.frames = opening
    opening.catch(() => {
      if (this.frames === opening) {
        this.frames = undefined
      }
    })
    return opening
  }

  private async open (signal: AbortSignal): Promise<FrameStream<SyncFrame>> {
    let stream: Stream
    try {
      stream = await this.init.openStream(signal)
    } catch (err: any) {
      throw new NetError(NetErrorCode.STREAM_CLOSED, `could not open a block-sync stream to ${this.peerId}: ${err?.message ?? err}`, { cause: err })
    }
    const frames = new FrameStream<SyncFrame>(stream, {
      codec: syncFrameCodec,
      maxFrameBytes: this.init.maxMessageBytes,
      idleTimeoutMs: this.init.idleTimeoutMs,
      isIdle: () => this.pending.size === 0,
      onFrame: (frame) => {
        const pending = this.pending.get(frame.id)
        // late answers to requests that timed out are dropped
        pending?.resolve(frame.body as SyncResponse)
      },
      onClose: (err?: Error) => {
        this.failAll(new NetError(NetErrorCode.STREAM_CLOSED, `block-sync stream to ${this.peerId} closed${err != null ? `: ${err.message}` : ''}`, { cause: err }))
      }
    })
    return frames
  }

  private failAll (err: NetError): void {
    for (const pending of this.pending.values()) {
      pending.reject(err)
    }
    this.pending.clear()
  }
}
