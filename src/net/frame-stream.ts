/**
 * Length-prefixed block-sync frames over one libp2p v3 stream: decodes
 * incoming frames from `message` events, serialises outgoing writes with
 * backpressure (waits for `drain`), and closes the stream after it sat idle.
 * Listener exceptions never escape: a frame that fails to decode or a
 * callback that throws aborts this stream only.
 */
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { pEvent } from 'p-event'
import { decodeSyncFrame, encodeSyncFrame } from '../protocols/block-sync.ts'
import { PbWriter } from '../protocols/pb-wire.ts'
import type { SyncFrame } from '../protocols/block-sync.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

export interface FrameStreamInit {
  /** largest frame accepted (bytes, without the length prefix) */
  maxMessageBytes: number
  /** close the stream when nothing was sent or received for this long and `isIdle()` holds */
  idleTimeoutMs: number
  /** called for every decoded frame; may start async work but must not block */
  onFrame(frame: SyncFrame): void
  /** called once when the stream ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
  /** true when no work is outstanding, so an idle timer may close the stream */
  isIdle(): boolean
}

export class FrameStream {
  readonly stream: Stream
  private readonly init: FrameStreamInit
  private readonly decoder: LengthPrefixedDecoder
  private writeChain: Promise<void>
  private idleTimer?: ReturnType<typeof setTimeout>
  private closed: boolean

  constructor (stream: Stream, init: FrameStreamInit) {
    this.stream = stream
    this.init = init
    this.closed = false
    this.writeChain = Promise.resolve()
    this.decoder = new LengthPrefixedDecoder({
      maxDataLength: init.maxMessageBytes,
      // one whole frame plus the start of the next can arrive in one message event
      maxBufferSize: init.maxMessageBytes * 2 + 16
    })
    this.onMessage = this.onMessage.bind(this)
    this.onStreamClose = this.onStreamClose.bind(this)
    this.onRemoteCloseWrite = this.onRemoteCloseWrite.bind(this)
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onStreamClose)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.touch()
  }

  get isOpen (): boolean {
    return !this.closed && this.stream.status === 'open' && this.stream.writeStatus === 'writable'
  }

  /** Write one frame; resolves once the frame is handed to the muxer, waiting for drain first when the buffer is full. */
  async send (frame: SyncFrame): Promise<void> {
    const bytes = encodeSyncFrame(frame)
    const prefix = new PbWriter(8).uint32(bytes.length).finish()
    const write = async (): Promise<void> => {
      if (!this.isOpen) {
        throw new Error('stream is closed')
      }
      this.touch()
      this.stream.send(prefix)
      if (!this.stream.send(bytes)) {
        await pEvent(this.stream, 'drain', { rejectionEvents: ['close'] })
      }
    }
    const next = this.writeChain.then(write, write)
    this.writeChain = next.catch(() => {})
    return next
  }

  /** Close gracefully (pending writes are flushed by the muxer). */
  async close (): Promise<void> {
    this.clearIdle()
    await this.stream.close().catch((err: Error) => {
      this.stream.abort(err)
    })
  }

  abort (err: Error): void {
    this.clearIdle()
    this.stream.abort(err)
  }

  private onMessage (evt: StreamMessageEvent): void {
    try {
      this.touch()
      for (const buf of this.decoder.decode(evt.data)) {
        this.init.onFrame(decodeSyncFrame(buf.subarray()))
      }
    } catch (err) {
      this.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private onRemoteCloseWrite (): void {
    // the remote sends nothing more: once our side has nothing left to do, close
    if (this.init.isIdle()) {
      void this.close()
    }
  }

  private onStreamClose (evt: StreamCloseEvent): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.clearIdle()
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onStreamClose)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    try {
      this.init.onClose(evt.error)
    } catch (err) {
      this.stream.log.error('onClose listener threw - %e', err)
    }
  }

  /** Re-arm the idle timer (called on every frame in or out). */
  touch (): void {
    if (this.closed) {
      return
    }
    this.clearIdle()
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      if (this.init.isIdle()) {
        void this.close()
      } else {
        this.touch()
      }
    }, this.init.idleTimeoutMs)
    this.idleTimer.unref?.()
  }

  private clearIdle (): void {
    if (this.idleTimer != null) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
  }
}
