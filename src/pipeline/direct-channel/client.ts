/**
 * The client's end: dials an offer with TLS 1.3 PSK (the offer's key and
 * identity; the handshake also proves the server holds the key, so no
 * certificate is needed), sends the hello with the offer's token and
 * returns the channel once the stage accepted it.
 */
import { connect } from 'node:tls'
import { DIRECT_CHANNEL_CLIENT_DEFAULTS, DIRECT_TLS_CIPHERS } from './constants.ts'
import { DirectChannel } from './direct-channel.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import { ACCEPT_BYTE, encodeHello } from './hello.ts'
import type { DirectChannelHandlers } from './direct-channel.ts'
import type { DirectChannelOffer } from './offer.ts'
import type { OnReadOpts } from 'node:net'
import type { ConnectionOptions, TLSSocket } from 'node:tls'

/** Buffer the stage's one-byte hello answer (and anything read with it) lands in. */
const HELLO_READ_BYTES = 1024

export interface ConnectDirectChannelInit extends DirectChannelHandlers {
  /** largest frame accepted */
  maxFrameBytes?: number
  /** TCP connect + TLS handshake + acceptance */
  timeoutMs?: number
  signal?: AbortSignal
}

/** Open the channel an offer describes; it is attached to `init`'s handlers. */
export async function connectDirectChannel (offer: DirectChannelOffer, init: ConnectDirectChannelInit): Promise<DirectChannel> {
  const timeoutMs = init.timeoutMs ?? DIRECT_CHANNEL_CLIENT_DEFAULTS.connectTimeoutMs
  const maxFrameBytes = init.maxFrameBytes ?? DIRECT_CHANNEL_CLIENT_DEFAULTS.maxFrameBytes
  if (init.signal?.aborted === true) {
    throw new DirectChannelError(DirectChannelErrorCode.ABORTED, 'direct channel connect aborted')
  }
  const psk = Buffer.from(offer.psk)
  const identity = Buffer.from(offer.identity).toString('hex')
  // reads land in memory we hand out (node's `onread`, a socket.connect()
  // option tls.connect passes on): the hello answer in a small buffer, then
  // the channel's frames in place (see FrameDecoder)
  let channel: DirectChannel | undefined
  let onHelloAnswer: (bytes: Uint8Array) => void = () => {}
  const helloBuffer = new Uint8Array(HELLO_READ_BYTES)
  const onread: OnReadOpts = {
    buffer: () => channel?.readBuffer() ?? helloBuffer,
    callback: (n: number, buf: Uint8Array): boolean => {
      if (channel != null) {
        return channel.onRead(n, buf)
      }
      onHelloAnswer(buf.subarray(0, n))
      return true
    }
  }
  const options: ConnectionOptions & { onread: OnReadOpts } = {
    host: offer.host,
    port: offer.port,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphers: DIRECT_TLS_CIPHERS,
    pskCallback: () => ({ psk, identity }),
    // the PSK handshake authenticates the server; there is no certificate to check
    checkServerIdentity: () => undefined,
    onread
  }
  const socket: TLSSocket = connect(options)
  socket.setNoDelay(true)
  return new Promise<DirectChannel>((resolve, reject) => {
    let secure = false
    const fail = (err: DirectChannelError): void => {
      cleanup()
      socket.destroy()
      reject(err)
    }
    const onAbort = (): void => { fail(new DirectChannelError(DirectChannelErrorCode.ABORTED, 'direct channel connect aborted')) }
    const onError = (err: Error & { code?: string }): void => {
      // a TLS alert during the handshake is the server refusing our key
      const refused = !secure && typeof err.code === 'string' && err.code.startsWith('ERR_SSL')
      fail(new DirectChannelError(refused ? DirectChannelErrorCode.REFUSED : DirectChannelErrorCode.CONNECT_FAILED, `direct channel to ${offer.host}:${offer.port} failed: ${err.message}`, { cause: err }))
    }
    const onClose = (): void => {
      fail(new DirectChannelError(DirectChannelErrorCode.REFUSED, `direct channel to ${offer.host}:${offer.port} was closed before it was accepted`))
    }
    const onSecure = (): void => {
      secure = true
      socket.write(encodeHello(offer.token))
    }
    onHelloAnswer = (bytes: Uint8Array): void => {
      onHelloAnswer = () => {}
      if (bytes[0] !== ACCEPT_BYTE) {
        fail(new DirectChannelError(DirectChannelErrorCode.REFUSED, `direct channel answered ${bytes[0]} instead of accepting`))
        return
      }
      cleanup()
      // bytes past the accept byte are in the reused hello buffer: copy them
      const ch = new DirectChannel(socket, maxFrameBytes, bytes.slice(1), true)
      channel = ch
      ch.attach(init)
      resolve(ch)
    }
    const timer = setTimeout(() => {
      fail(new DirectChannelError(DirectChannelErrorCode.TIMEOUT, `direct channel to ${offer.host}:${offer.port} not accepted within ${timeoutMs} ms`))
    }, timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      init.signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      socket.off('close', onClose)
      socket.off('secureConnect', onSecure)
    }
    init.signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('error', onError)
    socket.once('close', onClose)
    socket.once('secureConnect', onSecure)
  })
}
