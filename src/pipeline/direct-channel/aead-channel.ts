/**
 * /bly/infer/1.0.0 frames over plain TCP, each frame one AEAD record
 * (DirectTransport.AEAD; aead.ts): the same surface as the TLS
 * DirectChannel (send / close / abort / isOpen, attach with onFrame /
 * onBadFrame / onClose). A record's plaintext is one infer frame body (the
 * record's length header replaces the varint prefix). Writes: the frame is
 * sealed when sent, header + ciphertext + tag are written on a socket
 * corked for the tick (one writev, no joining copy). Reads: RecordDecoder,
 * in place (node's `onread` on the client, read-in-place.ts on the server)
 * or from `data` events. The first record each way is the handshake's proof
 * (aead-connect.ts, server.ts), handed to `onProof`, never to `onFrame`.
 * An authentication failure or a used-up counter closes the channel with a
 * DirectChannelError (AUTH_FAILED, RECORDS_EXHAUSTED).
 */
import { decodeInferFrame, encodeInferFrame } from '../../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from '../errors.ts'
import { DirectChannelError } from './errors.ts'
import { readInPlace } from './read-in-place.ts'
import { RecordDecoder } from './record-decoder.ts'
import type { AeadOpener, AeadSealer } from './aead.ts'
import type { DirectChannelHandlers } from './direct-channel.ts'
import type { InferFrame } from '../../protocols/infer.ts'
import type { Socket } from 'node:net'

interface PendingWrite {
  resolve(): void
  reject(err: Error): void
}

export interface AeadDirectChannelInit {
  sealer: AeadSealer
  opener: AeadOpener
  maxFrameBytes: number
  /** the first record from the peer (its proof of the key); throwing closes the channel */
  onProof(plaintext: Buffer): void
  /** the socket was created with `onread` feeding readBuffer()/onRead() */
  readsInPlace?: boolean
}

export class AeadDirectChannel {
  readonly socket: Socket
  private init?: DirectChannelHandlers
  private readonly sealer: AeadSealer
  private readonly decoder: RecordDecoder
  private onProof?: (plaintext: Buffer) => void
  /** frame bodies opened before attach() */
  private early: Buffer[]
  private pending: PendingWrite[]
  private corked: boolean
  private closed: boolean
  private broken: boolean
  private inPlace: boolean
  private closeError?: Error
  bytesIn: number
  bytesOut: number

  constructor (socket: Socket, init: AeadDirectChannelInit) {
    this.socket = socket
    this.sealer = init.sealer
    this.decoder = new RecordDecoder(init.opener, init.maxFrameBytes)
    this.onProof = init.onProof
    this.early = []
    this.pending = []
    this.corked = false
    this.closed = false
    this.broken = false
    this.inPlace = init.readsInPlace === true
    this.bytesIn = 0
    this.bytesOut = 0
    this.onData = this.onData.bind(this)
    this.onPlaintext = this.onPlaintext.bind(this)
    this.uncork = this.uncork.bind(this)
    socket.setNoDelay(true)
    socket.on('error', (err: Error) => { this.closeError ??= err })
    socket.once('close', () => { this.onSocketClose() })
  }

  /** Read `data` events (where the socket does not read in place); call once. */
  readEvents (): void {
    this.socket.on('data', this.onData)
  }

  /** Read in place on a socket a server accepted (read-in-place.ts); false where node does not allow it. */
  readInPlace (): boolean {
    if (!this.inPlace) {
      this.inPlace = readInPlace(this.socket, {
        buffer: () => this.readBuffer(),
        callback: (n, buf) => this.onRead(n, buf)
      })
    }
    return this.inPlace
  }

  get readsInPlace (): boolean {
    return this.inPlace
  }

  /** Records sealed (sent) and opened (received) so far, handshake proofs included. */
  get records (): { sent: number, received: number } {
    return { sent: this.sealer.counter, received: this.decoder.records }
  }

  /** Start delivering frames (and the close) to `handlers`; once only. */
  attach (handlers: DirectChannelHandlers): void {
    if (this.init != null) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'direct channel already has handlers')
    }
    this.init = handlers
    const early = this.early
    this.early = []
    for (const body of early) {
      if (this.broken) {
        break
      }
      this.deliver(body)
    }
    if (this.closed) {
      this.closed = false
      this.onSocketClose()
      return
    }
    if (!this.broken) {
      this.socket.resume()
    }
  }

  get isOpen (): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable
  }

  /** Seal and write one frame; resolves once written to the socket, rejects with STREAM_CLOSED when the channel closed first. */
  async send (frame: InferFrame): Promise<void> {
    if (!this.isOpen) {
      throw new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel is closed')
    }
    const { head, payload } = encodeInferFrame(frame)
    // the record's length header replaces the varint prefix
    let prefix = 0
    while ((head[prefix] & 0x80) !== 0) {
      prefix++
    }
    const body = head.subarray(prefix + 1)
    this.bytesOut += body.byteLength + (payload?.byteLength ?? 0)
    return this.sendRecord(payload == null ? [body] : [body, payload])
  }

  /**
   * Seal `parts` as one record and write it (also the handshake's proof
   * records). The socket is corked for the tick: the records of one tick go
   * out in one writev of header, ciphertext pieces and tag (no joining
   * copy). (Writing a large record piece by piece as it is sealed, uncorked,
   * measured slower: more syscalls, and the peer opens whole records.)
   */
  async sendRecord (parts: Uint8Array[]): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    const w: PendingWrite = { resolve, reject }
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(this.uncork)
    }
    let last: Buffer | undefined
    try {
      this.sealer.seal(parts, (buf) => {
        if (last != null) {
          this.socket.write(last)
        }
        last = buf
      })
    } catch (err) {
      this.abort(err as Error)
      throw err
    }
    this.pending.push(w)
    this.socket.write(last as Buffer, (err) => {
      const i = this.pending.indexOf(w)
      if (i >= 0) {
        this.pending.splice(i, 1)
      }
      if (err != null) {
        reject(new PipelineError(PipelineErrorCode.STREAM_CLOSED, `direct channel write failed: ${err.message}`, { cause: err }))
      } else {
        resolve()
      }
    })
    return promise
  }

  private uncork (): void {
    this.corked = false
    this.socket.uncork()
  }

  /** Close gracefully: what was sent goes out, then FIN. Resolves when the socket closed. */
  async close (): Promise<void> {
    if (this.socket.destroyed) {
      return
    }
    const closed = new Promise<void>(resolve => this.socket.once('close', () => { resolve() }))
    if (this.corked) {
      this.uncork()
    }
    this.socket.end()
    const timer = setTimeout(() => { this.socket.destroy() }, 5_000)
    timer.unref()
    await closed
    clearTimeout(timer)
  }

  /** Tear the channel down now; onClose gets `err`. */
  abort (err: Error): void {
    this.closeError ??= err
    this.socket.destroy()
  }

  readBuffer (): Uint8Array {
    return this.decoder.readBuffer()
  }

  /** `onread` callback: `n` bytes landed in `buf` (the last readBuffer()). False stops reading. */
  onRead (n: number, buf: Uint8Array): boolean {
    if (this.broken) {
      return false
    }
    try {
      this.decoder.read(buf, n, this.onPlaintext)
    } catch (err) {
      this.readFailed(err as Error)
    }
    // not attached yet (after the proof): stop reading until attach()
    return !this.broken && (this.init != null || this.onProof != null)
  }

  private onData (chunk: Uint8Array): void {
    if (this.broken) {
      return
    }
    try {
      this.decoder.push(chunk, this.onPlaintext)
    } catch (err) {
      this.readFailed(err as Error)
    }
    if (this.init == null && this.onProof == null && !this.broken) {
      this.socket.pause()
    }
  }

  /** An opened record. */
  private onPlaintext (plaintext: Buffer): void {
    const proof = this.onProof
    if (proof != null) {
      this.onProof = undefined
      proof(plaintext)
      return
    }
    if (this.init == null) {
      this.early.push(plaintext)
      return
    }
    this.deliver(plaintext)
  }

  private deliver (body: Buffer): void {
    this.bytesIn += body.byteLength
    let frame: InferFrame
    try {
      frame = decodeInferFrame(body)
    } catch (err) {
      this.readFailed(err as Error)
      return
    }
    try {
      this.init?.onFrame(frame)
    } catch (err) {
      this.readFailed(err as Error)
    }
  }

  /**
   * Authentication failure / used-up counter: the channel closes with it.
   * A frame that does not decode (or the owner's onFrame threw): stop
   * reading and tell the owner (it answers ERROR and aborts), as the TLS
   * channel does.
   */
  private readFailed (err: Error): void {
    if (this.broken) {
      return
    }
    this.broken = true
    this.socket.pause()
    if (err instanceof DirectChannelError || this.init == null) {
      this.abort(err)
      return
    }
    const e = err instanceof PipelineError ? err : new PipelineError(PipelineErrorCode.BAD_FRAME, `direct channel failed: ${err.message}`, { cause: err })
    try {
      this.init.onBadFrame(e)
    } catch {
      this.abort(e)
    }
  }

  private onSocketClose (): void {
    if (this.closed) {
      return
    }
    this.closed = true
    const e = new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed while writing')
    const pending = this.pending
    this.pending = []
    for (const w of pending) {
      w.reject(e)
    }
    if (this.init == null) {
      return
    }
    let err = this.closeError
    if (err == null && !this.decoder.idle) {
      err = new PipelineError(PipelineErrorCode.STREAM_CLOSED, 'direct channel closed inside a record')
    }
    try {
      this.init.onClose(err)
    } catch {
      // the owner's listener failed: nothing left to tear down
    }
  }
}
