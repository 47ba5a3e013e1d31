/**
 * The stage's end of direct channels: a node:tls server (TLS 1.3, PSK only,
 * no certificate) that accepts a connection only for an offer it issued
 * (`issueOffer`, handed to the client over the authenticated libp2p
 * stream): the PSK identity names the offer, the handshake proves the
 * client holds its key, and the first bytes inside TLS must be its
 * single-use token. Accepted channels go to `handler`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:tls'
import { DIRECT_CHANNEL_SERVER_DEFAULTS, DIRECT_TLS_CIPHERS, IDENTITY_BYTES, PSK_BYTES, TOKEN_BYTES } from './constants.ts'
import { DirectChannel } from './direct-channel.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import { ACCEPT_BYTE, HELLO_BYTES, decodeHello } from './hello.ts'
import type { DirectChannelOffer } from './offer.ts'
import type { PartialFrameBudget } from '../frame-budget.ts'
import type { Socket } from 'node:net'
import type { Server, TLSSocket } from 'node:tls'

export interface DirectChannelServerInit {
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
   * What partially received frames may hold over all channels (and whatever
   * else the owner charges to it, e.g. its libp2p streams); none = each
   * channel bounded by maxFrameBytes alone
   */
  frameBudget?: PartialFrameBudget
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
  private readonly init: Required<Omit<DirectChannelServerInit, 'handler' | 'frameBudget'>> & Pick<DirectChannelServerInit, 'handler' | 'frameBudget'>
  private server?: Server
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
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => { this.sockets.delete(socket) })
      socket.on('error', () => {})
    })
    // failed handshakes (wrong PSK, unknown identity, timeout): node destroys the socket
    server.on('tlsClientError', () => {})
    server.on('secureConnection', (socket: TLSSocket) => { this.onSecureConnection(socket) })
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
      const channel = new DirectChannel(socket, this.init.maxFrameBytes, all.subarray(HELLO_BYTES), false, this.init.frameBudget)
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
}

export function createDirectChannelServer (init: DirectChannelServerInit): DirectChannelServer {
  return new DirectChannelServer(init)
}
