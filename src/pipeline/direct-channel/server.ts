/**
 * The stage's end of direct channels. Transport AEAD (`transport: 'aead'`):
 * a node:net server; a connection must open with the HELLO of an offer
 * this server issued (its identity), the keys are derived from the offer's
 * PSK and both handshake halves (aead.ts), and the client's first sealed
 * record must be the offer's single-use token; the accept record follows.
 * Transport TLS (the default): a node:tls server (TLS 1.3, PSK only,
 * no certificate) that accepts a connection only for an offer it issued
 * (`issueOffer`, handed to the client over the authenticated libp2p
 * stream): the PSK identity names the offer, the handshake proves the
 * client holds its key, and the first bytes inside TLS must be its
 * single-use token. Accepted channels go to `handler`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer as createNetServer } from 'node:net'
import { createServer } from 'node:tls'
import { AeadDirectChannel } from './aead-channel.ts'
import { AEAD_CLIENT_HELLO_BYTES, AeadOpener, AeadSealer, decodeAeadClientHello, deriveAeadKeys, encodeAeadServerHello, handshakeHalf } from './aead.ts'
import { DIRECT_CHANNEL_SERVER_DEFAULTS, DIRECT_TLS_CIPHERS, DirectTransport, IDENTITY_BYTES, PSK_BYTES, TOKEN_BYTES } from './constants.ts'
import { TlsDirectChannel } from './direct-channel.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import { ACCEPT_BYTE, HELLO_BYTES, decodeHello } from './hello.ts'
import { readInPlace } from './read-in-place.ts'
import type { DirectTransportValue } from './constants.ts'
import type { DirectChannel } from './direct-channel.ts'
import type { DirectChannelOffer } from './offer.ts'
import type { Server as NetServer, Socket } from 'node:net'
import type { Server, TLSSocket } from 'node:tls'

export interface DirectChannelServerInit {
  /** what channels run over (DirectTransport; default TLS) */
  transport?: DirectTransportValue
  /** AEAD transport: records per direction before a channel closes */
  maxRecords?: number
  host?: string
  port?: number
  advertiseHost?: string
  offerTtlMs?: number
  maxPendingOffers?: number
  maxChannels?: number
  handshakeTimeoutMs?: number
  maxFrameBytes?: number
  /** read frames straight into their buffers (node internals; see read-in-place.ts); false: `data` events */
  readInPlace?: boolean
  /**
   * Called once per accepted channel with the peer the offer was issued to;
   * it must call `channel.attach()` (nothing is read before).
   */
  handler(channel: DirectChannel, remotePeer: string): void
}

interface PendingOffer {
  psk: Buffer
  token: Buffer
  remotePeer: string
  timer: ReturnType<typeof setTimeout>
}

export class DirectChannelServer {
  private readonly init: Required<Omit<DirectChannelServerInit, 'handler'>> & Pick<DirectChannelServerInit, 'handler'>
  private server?: Server | NetServer
  private port: number
  private readonly offers: Map<string, PendingOffer>
  /** the offer each TLS socket's PSK resolved to */
  private readonly socketOffers: WeakMap<TLSSocket, string>
  private readonly sockets: Set<Socket>
  private readonly channels: Set<DirectChannel>

  constructor (init: DirectChannelServerInit) {
    this.init = { ...DIRECT_CHANNEL_SERVER_DEFAULTS, ...init }
    this.port = 0
    this.offers = new Map()
    this.socketOffers = new WeakMap()
    this.sockets = new Set()
    this.channels = new Set()
  }

  /** What the channels run over. */
  get transport (): DirectTransportValue {
    return this.init.transport
  }

  get isStarted (): boolean {
    return this.server != null
  }

  /** Port the TLS server listens on (0 before start). */
  get listenPort (): number {
    return this.port
  }

  /** Channels accepted and still open. */
  get channelCount (): number {
    return this.channels.size
  }

  /** Offers issued and neither used nor expired. */
  get pendingOffers (): number {
    return this.offers.size
  }

  /** TCP connections held (in handshake, in hello or channels). */
  get connectionCount (): number {
    return this.sockets.size
  }

  async start (): Promise<void> {
    if (this.server != null) {
      return
    }
    const server = this.init.transport === DirectTransport.AEAD ? this.aeadServer() : this.tlsServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', () => {})
    const addr = server.address()
    this.port = typeof addr === 'object' && addr != null ? addr.port : 0
    this.server = server
  }

  private track (socket: Socket): void {
    this.sockets.add(socket)
    socket.once('close', () => { this.sockets.delete(socket) })
    socket.on('error', () => {})
  }

  private aeadServer (): NetServer {
    const server = createNetServer({ noDelay: true }, (socket: Socket) => { this.onAeadConnection(socket) })
    return server
  }

  private tlsServer (): Server {
    const server = createServer({
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers: DIRECT_TLS_CIPHERS,
      handshakeTimeout: this.init.handshakeTimeoutMs,
      pskCallback: (socket: TLSSocket, identity: string): Buffer | null => {
        const offer = this.offers.get(identity)
        if (offer == null) {
          return null
        }
        this.socketOffers.set(socket, identity)
        return offer.psk
      }
    })
    server.on('connection', (socket: Socket) => { this.track(socket) })
    // failed handshakes (wrong PSK, unknown identity, timeout): node destroys the socket
    server.on('tlsClientError', () => {})
    server.on('secureConnection', (socket: TLSSocket) => { this.onSecureConnection(socket) })
    return server
  }

  /** Stop listening, drop every pending offer and tear down every connection and channel. */
  async stop (): Promise<void> {
    const server = this.server
    if (server == null) {
      return
    }
    this.server = undefined
    for (const offer of this.offers.values()) {
      clearTimeout(offer.timer)
    }
    this.offers.clear()
    const closed = new Promise<void>(resolve => server.close(() => { resolve() }))
    for (const socket of this.sockets) {
      socket.destroy()
    }
    await closed
    this.port = 0
  }

  /** A fresh single-use offer for `remotePeer` (the libp2p peer id the request came from). */
  issueOffer (remotePeer: string): DirectChannelOffer {
    if (this.server == null) {
      throw new DirectChannelError(DirectChannelErrorCode.NOT_STARTED, 'direct channel server is not started')
    }
    if (this.offers.size >= this.init.maxPendingOffers) {
      throw new DirectChannelError(DirectChannelErrorCode.OFFERS_FULL, `${this.offers.size} direct channel offers are outstanding`)
    }
    const identity = randomBytes(IDENTITY_BYTES)
    const psk = randomBytes(PSK_BYTES)
    const token = randomBytes(TOKEN_BYTES)
    const key = identity.toString('hex')
    const timer = setTimeout(() => { this.offers.delete(key) }, this.init.offerTtlMs)
    timer.unref()
    this.offers.set(key, { psk, token, remotePeer, timer })
    return {
      transport: this.init.transport,
      host: this.init.advertiseHost,
      port: this.port,
      identity: new Uint8Array(identity),
      psk: new Uint8Array(psk),
      token: new Uint8Array(token)
    }
  }

  private onSecureConnection (socket: TLSSocket): void {
    const key = this.socketOffers.get(socket)
    const offer = key == null ? undefined : this.offers.get(key)
    if (key == null || offer == null) {
      socket.destroy()
      return
    }
    // single use, whatever happens next
    this.offers.delete(key)
    clearTimeout(offer.timer)
    socket.setNoDelay(true)
    const chunks: Buffer[] = []
    let have = 0
    const timer = setTimeout(() => { socket.destroy() }, this.init.handshakeTimeoutMs)
    timer.unref()
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      have += chunk.length
      if (have < HELLO_BYTES) {
        return
      }
      socket.off('data', onData)
      socket.off('close', onClose)
      clearTimeout(timer)
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
      const token = decodeHello(all.subarray(0, HELLO_BYTES))
      if (token == null || !timingSafeEqual(token, offer.token) || this.channels.size >= this.init.maxChannels || this.server == null) {
        socket.destroy()
        return
      }
      socket.write(Uint8Array.of(ACCEPT_BYTE))
      const channel = new TlsDirectChannel(socket, this.init.maxFrameBytes, all.subarray(HELLO_BYTES))
      if (this.init.readInPlace) {
        channel.readInPlace()
      }
      this.channels.add(channel)
      socket.once('close', () => { this.channels.delete(channel) })
      try {
        this.init.handler(channel, offer.remotePeer)
      } catch (err) {
        channel.abort(err as Error)
      }
    }
    const onClose = (): void => { clearTimeout(timer) }
    socket.on('data', onData)
    socket.once('close', onClose)
  }

  /**
   * AEAD transport: HELLO (naming an offer, which is burnt whatever happens
   * next), our half of the handshake, then the channel reads the client's
   * proof record (the token) before anything else.
   */
  private onAeadConnection (socket: Socket): void {
    this.track(socket)
    if (this.server == null || this.channels.size >= this.init.maxChannels) {
      socket.destroy()
      return
    }
    const timer = setTimeout(() => { socket.destroy() }, this.init.handshakeTimeoutMs)
    timer.unref()
    socket.once('close', () => { clearTimeout(timer) })
    const hello = Buffer.alloc(AEAD_CLIENT_HELLO_BYTES)
    let have = 0
    let channel: AeadDirectChannel | undefined
    let inPlace = false
    // bytes past the hello (none expected: the client waits for our half)
    let leftover: Uint8Array | undefined
    const onHello = (): void => {
      const h = decodeAeadClientHello(hello)
      const key = h == null ? undefined : Buffer.from(h.identity).toString('hex')
      const offer = key == null ? undefined : this.offers.get(key)
      if (h == null || key == null || offer == null) {
        socket.destroy()
        return
      }
      // single use, whatever happens next
      this.offers.delete(key)
      clearTimeout(offer.timer)
      const half = handshakeHalf()
      let keys
      try {
        keys = deriveAeadKeys(offer.psk, half, h, false)
      } catch {
        socket.destroy()
        return
      }
      const ch: AeadDirectChannel = new AeadDirectChannel(socket, {
        sealer: new AeadSealer(keys.stageToClient, this.init.maxRecords),
        opener: new AeadOpener(keys.clientToStage, this.init.maxRecords),
        maxFrameBytes: this.init.maxFrameBytes,
        readsInPlace: inPlace,
        onProof: (token) => {
          if (token.length !== TOKEN_BYTES || !timingSafeEqual(token, offer.token) || this.channels.size >= this.init.maxChannels || this.server == null) {
            throw new DirectChannelError(DirectChannelErrorCode.REFUSED, 'direct channel token refused')
          }
          clearTimeout(timer)
          ch.sendRecord([Uint8Array.of(ACCEPT_BYTE)]).catch(() => {})
          this.channels.add(ch)
          socket.once('close', () => { this.channels.delete(ch) })
          try {
            this.init.handler(ch, offer.remotePeer)
          } catch (err) {
            ch.abort(err as Error)
          }
        }
      })
      channel = ch
      socket.write(encodeAeadServerHello(half))
    }
    const take = (buf: Uint8Array, n: number): void => {
      const k = Math.min(n, AEAD_CLIENT_HELLO_BYTES - have)
      hello.set(buf.subarray(0, k), have)
      have += k
      if (have === AEAD_CLIENT_HELLO_BYTES) {
        if (k < n) {
          leftover = buf.slice(k, n)
        }
        onHello()
      }
    }
    const feedLeftover = (): void => {
      const rest = leftover
      leftover = undefined
      if (rest != null && channel != null) {
        if (inPlace) {
          const target = channel.readBuffer()
          target.set(rest.subarray(0, target.length))
          channel.onRead(Math.min(rest.length, target.length), target)
        } else {
          channel.socket.emit('data', rest)
        }
      }
    }
    const scratch = new Uint8Array(1024)
    inPlace = this.init.readInPlace && readInPlace(socket, {
      buffer: () => channel?.readBuffer() ?? scratch,
      callback: (n, buf) => {
        if (channel != null) {
          return channel.onRead(n, buf)
        }
        take(buf, n)
        feedLeftover()
        return !socket.destroyed
      }
    })
    if (inPlace) {
      socket.resume()
      return
    }
    const onData = (chunk: Buffer): void => {
      take(chunk, chunk.length)
      if (channel != null) {
        socket.off('data', onData)
        channel.readEvents()
        feedLeftover()
      }
    }
    socket.on('data', onData)
  }
}

export function createDirectChannelServer (init: DirectChannelServerInit): DirectChannelServer {
  return new DirectChannelServer(init)
}
