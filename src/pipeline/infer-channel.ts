/**
 * What the stage server and the stage client drive: /bly/infer/1.0.0 frames
 * over some authenticated channel, either a libp2p stream (net/frame-stream
 * FrameStream with the infer-frames.ts codec) or a direct TLS channel
 * (direct-channel/DirectChannel). Both have this surface.
 */
import type { InferFrame } from '../protocols/infer.ts'

/** The listeners of a channel's owner. */
export interface InferChannelHandlers {
  onFrame(frame: InferFrame): void
  /** a frame that did not decode (the owner answers ERROR and aborts) */
  onBadFrame(err: Error): void
  /** called once when the channel ends, with the error when it did not end cleanly */
  onClose(err?: Error): void
}

export interface InferChannel {
  readonly isOpen: boolean
  bytesIn: number
  bytesOut: number
  /** write one frame; resolves once it was handed to the transport */
  send(frame: InferFrame): Promise<void>
  /**
   * close gracefully once queued writes went out; nothing more is read from
   * the moment it is called (a frame being received is dropped at once)
   */
  close(): Promise<void>
  /** tear down now (a frame being received is dropped at once) */
  abort(err: Error): void
  /**
   * deliver no more frames: what arrives from now on is dropped, and so is
   * the frame being received (its PartialFrameBudget charge goes back);
   * writing goes on. Idempotent.
   */
  stopReading(): void
}

/** Which transport a channel runs over. */
export const InferTransport = {
  /** a direct TLS 1.3-PSK channel offered over the libp2p connection */
  DIRECT: 'direct',
  /** a /bly/infer/1.0.0 libp2p stream */
  LIBP2P: 'libp2p'
} as const

export type InferTransportValue = typeof InferTransport[keyof typeof InferTransport]
