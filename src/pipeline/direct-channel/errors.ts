import { BlydError } from '../../protocols/errors.ts'

/** Codes of errors raised while offering, opening or accepting a direct channel. */
export const DirectChannelErrorCode = {
  /** an offer message that does not decode, or a malformed offer argument */
  BAD_OFFER: 'ERR_DIRECT_BAD_OFFER',
  /** the peer refused the channel: wrong PSK, unknown/expired/used token, or too many channels */
  REFUSED: 'ERR_DIRECT_REFUSED',
  /** connect, handshake or hello did not finish in time */
  TIMEOUT: 'ERR_DIRECT_TIMEOUT',
  /** the operation was aborted through its AbortSignal */
  ABORTED: 'ERR_DIRECT_ABORTED',
  /** the server is not started (or stopping) */
  NOT_STARTED: 'ERR_DIRECT_NOT_STARTED',
  /** too many offers outstanding */
  OFFERS_FULL: 'ERR_DIRECT_OFFERS_FULL',
  /** the socket failed or closed during setup */
  CONNECT_FAILED: 'ERR_DIRECT_CONNECT_FAILED'
} as const

export type DirectChannelErrorCodeValue = typeof DirectChannelErrorCode[keyof typeof DirectChannelErrorCode]

export class DirectChannelError extends BlydError {
  constructor (code: DirectChannelErrorCodeValue, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'DirectChannelError'
  }
}
