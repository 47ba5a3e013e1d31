/**
 * What the stage server and the stage client drive: /bly/infer/1.0.0 frames
 * over some authenticated channel, either a libp2p stream (InferStream) or a
 * direct TLS channel (direct-channel/DirectChannel). Both have this surface.
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
  /** close gracefully once queued writes went out */
  close(): Promise<void>
  /** tear down now */
  abort(err: Error): void
}

/** Which transport a channel runs over. */
export const InferTransport = {
  /** a direct TLS 1.3-PSK channel offered over the libp2p connection */
  DIRECT: 'direct',
  /** a /bly/infer/1.0.0 libp2p stream */
  LIBP2P: 'libp2p'
} as const

export type InferTransportValue = typeof InferTransport[keyof typeof InferTransport]
