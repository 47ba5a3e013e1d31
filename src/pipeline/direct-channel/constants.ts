/**
 * Defaults of the direct TLS data channel (see docs/transport.md, "Direct
 * TLS channel"). Nothing reads these at runtime except the factories that
 * fill in missing options.
 */

/** Protocol on which a client asks a stage for a direct channel offer (over an authenticated libp2p connection). */
export const DIRECT_OFFER_PROTOCOL = '/bly/infer-direct/1.0.0'

/** TLS 1.3 only, one suite: OpenSSL's PSK callbacks in TLS 1.3 need a SHA-256 suite, and AES-GCM is hardware-accelerated. */
export const DIRECT_TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256'

/** Bytes of the pre-shared key, the PSK identity and the token of an offer. */
export const PSK_BYTES = 32
export const IDENTITY_BYTES = 16
export const TOKEN_BYTES = 16

export const DIRECT_CHANNEL_SERVER_DEFAULTS = {
  /** interface the TLS server binds */
  host: '127.0.0.1',
  /** 0 = any free port */
  port: 0,
  /**
   * host put in offers; '' tells the client to dial the address it already
   * reaches the stage's libp2p node at (right when the server binds 0.0.0.0)
   */
  advertiseHost: '',
  /** an offer not used within this long is dropped */
  offerTtlMs: 10_000,
  /** offers issued and not yet used; one more is refused */
  maxPendingOffers: 256,
  /** channels open at once; one more connection is refused */
  maxChannels: 64,
  /** TLS handshake + hello (token) must complete within this long */
  handshakeTimeoutMs: 5_000,
  /** largest frame accepted (bytes, without the length prefix) */
  maxFrameBytes: 64 * 1024 * 1024,
  /**
   * read frames straight into their buffers, as the client does with node's
   * `onread` (through node internals on accepted sockets; falls back to
   * `data` events where they are missing)
   */
  readInPlace: true
} as const

export const DIRECT_CHANNEL_CLIENT_DEFAULTS = {
  /** TCP connect + TLS handshake + hello acknowledgement */
  connectTimeoutMs: 5_000,
  /** largest frame accepted */
  maxFrameBytes: 256 * 1024 * 1024
} as const
