/**
 * The network layer's error class and codes. It lives in protocols/ because
 * the block-sync codec (block-sync.ts) throws ERR_SYNC_BAD_MESSAGE; the rest
 * of the codes are raised by src/net, whose errors.ts re-exports them.
 */
import { BlydError } from './errors.ts'

/** Stable codes of the network layer's errors. */
export const NetErrorCode = {
  /** a block-sync frame that does not decode */
  BAD_MESSAGE: 'ERR_SYNC_BAD_MESSAGE',
  /** the remote answered a request with an error frame */
  REMOTE: 'ERR_SYNC_REMOTE',
  /** the remote does not have what was asked for */
  NOT_FOUND: 'ERR_SYNC_NOT_FOUND',
  /** the remote has too many of our requests in flight */
  BUSY: 'ERR_SYNC_BUSY',
  /** no response within the request timeout */
  TIMEOUT: 'ERR_SYNC_TIMEOUT',
  /** the request stream closed or reset before the response came */
  STREAM_CLOSED: 'ERR_SYNC_STREAM_CLOSED',
  /** the remote sent a header whose id is not the one asked for */
  WRONG_BLOCK: 'ERR_SYNC_WRONG_BLOCK',
  /** a catch-up walk found more unknown ancestors than allowed */
  SYNC_TOO_LARGE: 'ERR_SYNC_TOO_LARGE',
  /** the peer is banned for lying over sync or a gossip score at the graylist (cool-off running) */
  PEER_BANNED: 'ERR_PEER_BANNED',
  /** no connected peer could provide a payload chunk */
  PAYLOAD_UNAVAILABLE: 'ERR_PAYLOAD_UNAVAILABLE',
  /** the service is not started (or stopping) */
  NOT_STARTED: 'ERR_NET_NOT_STARTED',
  /** bad argument from a local caller */
  INVALID_ARGUMENT: 'ERR_NET_INVALID_ARGUMENT'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type NetErrorCode = typeof NetErrorCode[keyof typeof NetErrorCode]

/** An error the network layer raises on purpose. */
export class NetError extends BlydError {
  constructor (code: NetErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'NetError'
  }
}
