/**
 * The offer of a direct channel and its exchange over an authenticated
 * libp2p stream (DIRECT_OFFER_PROTOCOL, or any stream the stage protocol
 * hands over). The offer carries the TLS-PSK secret: it must only ever
 * travel over an encrypted, peer-authenticated libp2p connection, which is
 * what binds the direct channel to the stage's libp2p identity.
 *
 * Wire (one length-prefixed message each way): the request is [version=1];
 * the answer is [version=1][status 0=offer][port u16 LE][identity 16][psk 32]
 * [token 16][hostLen u8][host utf8], or [version=1][status 1=unavailable]
 * [message utf8].
 */
import { lpStream } from '@libp2p/utils'
import { IDENTITY_BYTES, PSK_BYTES, TOKEN_BYTES } from './constants.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'

export const OFFER_VERSION = 1
const STATUS_OFFER = 0
const STATUS_UNAVAILABLE = 1
const MAX_HOST_BYTES = 255
const FIXED_BYTES = 2 + 2 + IDENTITY_BYTES + PSK_BYTES + TOKEN_BYTES + 1
const MAX_ANSWER_BYTES = FIXED_BYTES + MAX_HOST_BYTES + 1024

export interface DirectChannelOffer {
  /** host to dial; '' = the address the client reaches the stage's libp2p node at */
  host: string
  port: number
  /** TLS-PSK identity (also names the offer on the server) */
  identity: Uint8Array
  /** TLS 1.3 pre-shared key, fresh per offer */
  psk: Uint8Array
  /** single-use token sent as the first bytes inside TLS */
  token: Uint8Array
}

function badOffer (message: string): DirectChannelError {
  return new DirectChannelError(DirectChannelErrorCode.BAD_OFFER, message)
}

export function encodeDirectOffer (offer: DirectChannelOffer): Uint8Array {
  const host = new TextEncoder().encode(offer.host)
  if (host.length > MAX_HOST_BYTES) {
    throw badOffer(`offer host is over ${MAX_HOST_BYTES} bytes`)
  }
  if (!Number.isInteger(offer.port) || offer.port < 1 || offer.port > 65535) {
    throw badOffer(`offer port ${offer.port} is not a TCP port`)
  }
  if (offer.identity.length !== IDENTITY_BYTES || offer.psk.length !== PSK_BYTES || offer.token.length !== TOKEN_BYTES) {
    throw badOffer('offer identity, psk or token has the wrong length')
  }
  const out = new Uint8Array(FIXED_BYTES + host.length)
  const view = new DataView(out.buffer)
  out[0] = OFFER_VERSION
  out[1] = STATUS_OFFER
  view.setUint16(2, offer.port, true)
  let at = 4
  out.set(offer.identity, at)
  at += IDENTITY_BYTES
  out.set(offer.psk, at)
  at += PSK_BYTES
  out.set(offer.token, at)
  at += TOKEN_BYTES
  out[at++] = host.length
  out.set(host, at)
  return out
}

/** Decodes an answer: the offer, or throws REFUSED (the stage has none to give) / BAD_OFFER. */
export function decodeDirectOffer (bytes: Uint8Array): DirectChannelOffer {
  if (bytes.length < 2 || bytes[0] !== OFFER_VERSION) {
    throw badOffer(`offer answer of ${bytes.length} bytes with version ${bytes[0]} is not understood`)
  }
  if (bytes[1] === STATUS_UNAVAILABLE) {
    throw new DirectChannelError(DirectChannelErrorCode.REFUSED, `stage has no direct channel: ${new TextDecoder().decode(bytes.subarray(2, 2 + 1024))}`)
  }
  if (bytes[1] !== STATUS_OFFER || bytes.length < FIXED_BYTES) {
    throw badOffer('offer answer is truncated or has an unknown status')
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const port = view.getUint16(2, true)
  let at = 4
  const identity = bytes.slice(at, at + IDENTITY_BYTES)
  at += IDENTITY_BYTES
  const psk = bytes.slice(at, at + PSK_BYTES)
  at += PSK_BYTES
  const token = bytes.slice(at, at + TOKEN_BYTES)
  at += TOKEN_BYTES
  const hostLen = bytes[at++]
  if (bytes.length !== at + hostLen) {
    throw badOffer(`offer host length ${hostLen} does not match the ${bytes.length} byte message`)
  }
  if (port === 0) {
    throw badOffer('offer port is 0')
  }
  let host: string
  try {
    host = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(at))
  } catch {
    throw badOffer('offer host is not UTF-8')
  }
  return { host, port, identity, psk, token }
}

function encodeUnavailable (message: string): Uint8Array {
  const text = new TextEncoder().encode(message).subarray(0, 1024)
  const out = new Uint8Array(2 + text.length)
  out[0] = OFFER_VERSION
  out[1] = STATUS_UNAVAILABLE
  out.set(text, 2)
  return out
}

/** What issues offers (the DirectChannelServer): answerDirectOffer needs nothing else of it. */
export interface DirectOfferIssuer {
  /** a fresh single-use offer for `remotePeer`; throws when none can be issued */
  issueOffer(remotePeer: string): DirectChannelOffer
}

export interface RequestDirectOfferOptions extends AbortOptions {
  /** host to put in an offer whose host is '' (the stage's IP as the client dials it) */
  remoteHost?: string
}

/** Client side: ask for an offer on `stream` (then closed). Throws REFUSED when the stage has none. */
export async function requestDirectOffer (stream: Stream, options: RequestDirectOfferOptions = {}): Promise<DirectChannelOffer> {
  const lp = lpStream(stream, { maxDataLength: MAX_ANSWER_BYTES })
  try {
    await lp.write(Uint8Array.of(OFFER_VERSION), options)
    const answer = await lp.read(options)
    const offer = decodeDirectOffer(answer.subarray())
    if (offer.host === '') {
      if (options.remoteHost == null) {
        throw badOffer('offer names no host and no remoteHost was given')
      }
      offer.host = options.remoteHost
    }
    await stream.close(options).catch(() => {})
    return offer
  } catch (err) {
    stream.abort(err as Error)
    if (options.signal?.aborted === true) {
      throw new DirectChannelError(DirectChannelErrorCode.ABORTED, 'direct offer request aborted', { cause: err })
    }
    throw err
  }
}

/**
 * Stage side: answer one request on `stream` with a fresh offer from
 * `server` for `remotePeer` (or "unavailable" when it cannot issue one).
 */
export async function answerDirectOffer (stream: Stream, server: DirectOfferIssuer, remotePeer: string, options: AbortOptions = {}): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: 16 })
  try {
    const req = await lp.read(options)
    if (req.byteLength < 1 || req.get(0) !== OFFER_VERSION) {
      await lp.write(encodeUnavailable(`offer request version ${req.byteLength > 0 ? req.get(0) : 'none'} not supported`), options)
    } else {
      let answer: Uint8Array
      try {
        answer = encodeDirectOffer(server.issueOffer(remotePeer))
      } catch (err) {
        answer = encodeUnavailable((err as Error).message)
      }
      await lp.write(answer, options)
    }
    await stream.close(options).catch(() => {})
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
