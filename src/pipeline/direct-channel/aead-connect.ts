/**
 * The client's end of the AEAD transport: plain TCP to the offer's port,
 * HELLO (identity, nonce, X25519 key), the stage's nonce and key, keys
 * derived (aead.ts), the first sealed record carries the offer's token; the
 * channel is returned once the stage's first record (the accept byte)
 * opened under the derived key, which proves the stage holds the PSK.
 */
import { connect } from 'node:net'
import { AeadDirectChannel } from './aead-channel.ts'
import { AEAD_SERVER_HELLO_BYTES, AeadOpener, AeadSealer, decodeAeadServerHello, deriveAeadKeys, encodeAeadClientHello, handshakeHalf } from './aead.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import { ACCEPT_BYTE } from './hello.ts'
import type { DirectChannelHandlers } from './direct-channel.ts'
import type { DirectChannelOffer } from './offer.ts'
import type { OnReadOpts, Socket } from 'node:net'

const HELLO_READ_BYTES = 1024

export interface ConnectAeadInit extends DirectChannelHandlers {
  maxFrameBytes: number
  maxRecords: number
  timeoutMs: number
  signal?: AbortSignal
}

export async function connectAeadChannel (offer: DirectChannelOffer, init: ConnectAeadInit): Promise<AeadDirectChannel> {
  if (init.signal?.aborted === true) {
    throw new DirectChannelError(DirectChannelErrorCode.ABORTED, 'direct channel connect aborted')
  }
  const half = handshakeHalf()
  let channel: AeadDirectChannel | undefined
  const helloBuffer = new Uint8Array(HELLO_READ_BYTES)
  const serverHello = Buffer.alloc(AEAD_SERVER_HELLO_BYTES)
  let have = 0
  let onServerHello: () => void = () => {}
  const onread: OnReadOpts = {
    buffer: () => channel?.readBuffer() ?? helloBuffer,
    callback: (n: number, buf: Uint8Array): boolean => {
      if (channel != null) {
        return channel.onRead(n, buf)
      }
      const take = Math.min(n, AEAD_SERVER_HELLO_BYTES - have)
      serverHello.set(buf.subarray(0, take), have)
      have += take
      if (have === AEAD_SERVER_HELLO_BYTES) {
        onServerHello()
        // bytes past the server hello (none expected: the stage waits for our token)
        const ch = channel as AeadDirectChannel | undefined
        if (ch != null && take < n) {
          const rest = buf.slice(take, n)
          const target = ch.readBuffer()
          target.set(rest.subarray(0, target.length))
          return ch.onRead(Math.min(rest.length, target.length), target)
        }
      }
      return true
    }
  }
  const socket: Socket = connect({ host: offer.host, port: offer.port, onread })
  socket.setNoDelay(true)
  return new Promise<AeadDirectChannel>((resolve, reject) => {
    let settled = false
    const fail = (err: DirectChannelError): void => {
      if (settled) {
        return
      }
      settled = true
      cleanup()
      socket.destroy()
      reject(err)
    }
    const onAbort = (): void => { fail(new DirectChannelError(DirectChannelErrorCode.ABORTED, 'direct channel connect aborted')) }
    const onError = (err: Error): void => {
      fail(new DirectChannelError(DirectChannelErrorCode.CONNECT_FAILED, `direct channel to ${offer.host}:${offer.port} failed: ${err.message}`, { cause: err }))
    }
    const onClose = (): void => {
      fail(new DirectChannelError(DirectChannelErrorCode.REFUSED, `direct channel to ${offer.host}:${offer.port} was closed before it was accepted`))
    }
    socket.once('connect', () => { socket.write(encodeAeadClientHello(offer.identity, half)) })
    onServerHello = (): void => {
      let keys
      try {
        keys = deriveAeadKeys(offer.psk, half, decodeAeadServerHello(serverHello), true)
      } catch (err) {
        fail(new DirectChannelError(DirectChannelErrorCode.REFUSED, (err as Error).message, { cause: err }))
        return
      }
      const ch: AeadDirectChannel = new AeadDirectChannel(socket, {
        sealer: new AeadSealer(keys.clientToStage, init.maxRecords),
        opener: new AeadOpener(keys.stageToClient, init.maxRecords),
        maxFrameBytes: init.maxFrameBytes,
        readsInPlace: true,
        onProof: (plaintext) => {
          if (plaintext.length !== 1 || plaintext[0] !== ACCEPT_BYTE) {
            throw new DirectChannelError(DirectChannelErrorCode.REFUSED, 'direct channel answered something else than its accept record')
          }
          if (settled) {
            return
          }
          settled = true
          cleanup()
          ch.attach(init)
          resolve(ch)
        }
      })
      channel = ch
      // proves we hold the key, and names the offer's single-use token
      ch.sendRecord([offer.token]).catch(() => {})
    }
    const timer = setTimeout(() => {
      fail(new DirectChannelError(DirectChannelErrorCode.TIMEOUT, `direct channel to ${offer.host}:${offer.port} not accepted within ${init.timeoutMs} ms`))
    }, init.timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      init.signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    init.signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('error', onError)
    socket.once('close', onClose)
  })
}
