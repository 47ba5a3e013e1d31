import { connect } from 'node:tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { FrameDecoder } from '../../src/net/frame-decoder.ts'
import { createBlyLibp2p } from '../../src/net/libp2p-node.ts'
import { ACCEPT_BYTE, encodeHello } from '../../src/pipeline/direct-channel/hello.ts'
import {
  DIRECT_OFFER_PROTOCOL, DirectChannelErrorCode, answerDirectOffer, connectDirectChannel,
  createDirectChannelServer, decodeDirectOffer, encodeDirectOffer, requestDirectOffer
} from '../../src/pipeline/direct-channel/index.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { inferFrameErrors } from '../../src/pipeline/infer-frames.ts'
import { encodeInferFrameBytes, f32Tensor, tensorF32 } from '../../src/protocols/infer.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { DirectChannel, DirectChannelOffer, DirectChannelServer } from '../../src/pipeline/direct-channel/index.ts'
import type { InferFrame } from '../../src/protocols/infer.ts'

/** A server whose channels echo every FORWARD back as a RESULT (`attachAfterMs`: attach the handlers that much later). */
function echoServer (opts: { offerTtlMs?: number, handshakeTimeoutMs?: number, readInPlace?: boolean, attachAfterMs?: number } = {}): { server: DirectChannelServer, accepted: Array<{ channel: DirectChannel, peer: string, closed?: Error | null }> } {
  const accepted: Array<{ channel: DirectChannel, peer: string, closed?: Error | null }> = []
  const { attachAfterMs, ...init } = opts
  const server = createDirectChannelServer({
    ...init,
    maxFrameBytes: 4 * 1024 * 1024,
    handler: (channel, peer) => {
      const entry: { channel: DirectChannel, peer: string, closed?: Error | null } = { channel, peer }
      accepted.push(entry)
      const attach = (): void => channel.attach({
        onFrame: (f) => {
          if (f.type === 'forward') {
            void channel.send({ type: 'result', sessionId: f.sessionId, seq: f.seq, startPos: f.startPos, kind: 0, tensor: f.tensor }).catch(() => {})
          }
        },
        onBadFrame: (err) => { channel.abort(err) },
        onClose: (err) => { entry.closed = err ?? null }
      })
      if (attachAfterMs == null) {
        attach()
      } else {
        setTimeout(attach, attachAfterMs)
      }
    }
  })
  return { server, accepted }
}

interface Client { channel: DirectChannel, frames: InferFrame[], closed: Promise<Error | undefined>, next(): Promise<InferFrame> }

async function open (offer: DirectChannelOffer, signal?: AbortSignal): Promise<Client> {
  const frames: InferFrame[] = []
  let wake: (() => void) | undefined
  let onClosed!: (err?: Error) => void
  const closed = new Promise<Error | undefined>(resolve => { onClosed = resolve })
  const channel = await connectDirectChannel(offer, {
    signal,
    onFrame: (f) => { frames.push(f); wake?.() },
    onBadFrame: (err) => { throw err },
    onClose: (err) => { onClosed(err); wake?.() }
  })
  const next = async (): Promise<InferFrame> => {
    const arrived = (resolve: () => void): void => { wake = resolve }
    while (frames.length === 0) {
      await new Promise<void>(arrived)
    }
    const f = frames.shift()
    if (f == null) {
      throw new Error('no frame')
    }
    return f
  }
  return { channel, frames, closed, next }
}

async function waitFor (check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) {
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  expect(check()).to.equal(true)
}

describe('direct TLS channel', function () {
  let server: DirectChannelServer
  let accepted: ReturnType<typeof echoServer>['accepted']

  beforeEach(async () => {
    ({ server, accepted } = echoServer())
    await server.start()
  })

  afterEach(async () => {
    await server.stop()
  })

  async function roundTrip (srv: DirectChannelServer, acc: typeof accepted): Promise<void> {
    const c = await open(srv.issueOffer('peer-a'))
    expect(acc.map(a => a.peer)).to.deep.equal(['peer-a'])
    expect(srv.pendingOffers).to.equal(0)
    const sizes = [1, 4096, 256 * 1024, 3 * 1024 * 1024 / 4, 5, 70_000]
    const sent = sizes.map((n, i) => new Float32Array(n).map((_, j) => (j * 7 + i) % 1013 - 500.5))
    await Promise.all(sent.map(async (data, i) => c.channel.send({ type: 'forward', sessionId: 9, seq: i + 1, startPos: i, tensor: f32Tensor(data, 1, data.length) })))
    for (let i = 0; i < sent.length; i++) {
      const f = await c.next()
      expect(f.type).to.equal('result')
      if (f.type !== 'result') {
        return
      }
      expect(f.seq).to.equal(i + 1)
      expect(f.startPos).to.equal(i)
      expect(tensorF32(f.tensor)).to.deep.equal(sent[i])
    }
    expect(c.channel.bytesIn).to.equal(c.channel.bytesOut)
    // the client reads in place (node's onread)
    expect(c.channel.readsInPlace).to.equal(true)
    await c.channel.close()
    expect(await c.closed).to.equal(undefined)
    await waitFor(() => srv.channelCount === 0 && srv.connectionCount === 0)
  }

  it('round-trips infer frames, large and small, in order', async () => {
    await roundTrip(server, accepted)
    // on this node the server's channels read in place too (node internals, see read-in-place.ts)
    expect(accepted[0].channel.readsInPlace).to.equal(true)
  })

  it('round-trips the same with the server reading data events (readInPlace: false, the fallback)', async () => {
    const other = echoServer({ readInPlace: false })
    await other.server.start()
    try {
      await roundTrip(other.server, other.accepted)
      expect(other.accepted[0].channel.readsInPlace).to.equal(false)
    } finally {
      await other.server.stop()
    }
  })

  it('keeps frames a client sends right behind its hello (separate TLS records, before the server attached)', async () => {
    for (const readInPlace of [true, false]) {
      const other = echoServer({ readInPlace, attachAfterMs: 20 })
      await other.server.start()
      try {
        const offer = other.server.issueOffer('peer-h')
        const data = new Float32Array(3000).map((_, j) => j % 97)
        const chunks: Buffer[] = []
        const eager = connect({
          host: '127.0.0.1',
          port: offer.port,
          minVersion: 'TLSv1.3',
          ciphers: 'TLS_AES_128_GCM_SHA256',
          checkServerIdentity: () => undefined,
          pskCallback: () => ({ psk: Buffer.from(offer.psk), identity: Buffer.from(offer.identity).toString('hex') })
        })
        eager.on('data', (chunk: Buffer) => chunks.push(chunk))
        await new Promise(resolve => eager.once('secureConnect', resolve))
        // hello and two frames as three writes in one tick: three TLS records, usually read in one go
        eager.write(encodeHello(offer.token))
        eager.write(encodeInferFrameBytes({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(data, 1, data.length) }))
        eager.write(encodeInferFrameBytes({ type: 'forward', sessionId: 1, seq: 2, startPos: 1, tensor: f32Tensor(data, 1, data.length) }))
        const answer = encodeInferFrameBytes({ type: 'result', sessionId: 1, seq: 1, startPos: 0, kind: 0, tensor: f32Tensor(data, 1, data.length) })
        // the accept byte, then two RESULTs
        await waitFor(() => chunks.reduce((n, c) => n + c.length, 0) >= 1 + 2 * answer.length)
        const got = Buffer.concat(chunks)
        expect(got[0]).to.equal(ACCEPT_BYTE)
        expect(Array.from(got.subarray(1, 1 + answer.length))).to.deep.equal(Array.from(answer))
        expect(other.accepted[0].channel.readsInPlace).to.equal(readInPlace)
        eager.destroy()
      } finally {
        await other.server.stop()
      }
    }
  })

  it('close() sends what is still queued (large payloads written one at a time) before closing', async () => {
    const seqs: number[] = []
    let ended: (err?: Error) => void = () => {}
    const done = new Promise<Error | undefined>(resolve => { ended = resolve })
    const counting = createDirectChannelServer({
      maxFrameBytes: 4 * 1024 * 1024,
      handler: (channel) => {
        channel.attach({
          onFrame: (f) => { seqs.push(f.type === 'forward' ? f.seq : -1) },
          onBadFrame: (err) => { channel.abort(err) },
          onClose: (err) => { ended(err) }
        })
      }
    })
    await counting.start()
    try {
      const c = await open(counting.issueOffer('peer-q'))
      const data = new Float32Array(300_000).map((_, j) => j % 11)
      const sends = [1, 2, 3, 4].map(async seq => c.channel.send({ type: 'forward', sessionId: 1, seq, startPos: 0, tensor: f32Tensor(data, 1, data.length) }))
      await c.channel.close()
      await Promise.all(sends)
      expect(await done).to.equal(undefined)
      expect(seqs).to.deep.equal([1, 2, 3, 4])
    } finally {
      await counting.stop()
    }
  })

  it('refuses a wrong PSK, a wrong token, and a used or expired offer', async () => {
    const offer = server.issueOffer('peer-b')
    const wrongPsk = { ...offer, psk: offer.psk.map(b => b ^ 1) }
    await expect(connectDirectChannel(wrongPsk, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    // the PSK was wrong, the offer is still good
    const wrongToken = { ...offer, token: offer.token.map(b => b ^ 1) }
    await expect(connectDirectChannel(wrongToken, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    // a failed token burns the offer
    await expect(connectDirectChannel(offer, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    const good = server.issueOffer('peer-b')
    const c = await open(good)
    await c.channel.close()
    await expect(connectDirectChannel(good, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    expect(accepted).to.have.length(1)
    await waitFor(() => server.connectionCount === 0)
  })

  it('expires offers and times out a client that never says hello', async () => {
    await server.stop();
    ({ server, accepted } = echoServer({ offerTtlMs: 50, handshakeTimeoutMs: 200 }))
    await server.start()
    const stale = server.issueOffer('peer-c')
    await waitFor(() => server.pendingOffers === 0)
    await expect(connectDirectChannel(stale, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    // TLS done, no hello: dropped by the server
    const offer = server.issueOffer('peer-c')
    const mute = connect({
      host: '127.0.0.1',
      port: offer.port,
      minVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_128_GCM_SHA256',
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: Buffer.from(offer.psk), identity: Buffer.from(offer.identity).toString('hex') })
    })
    mute.on('error', () => {})
    await new Promise(resolve => mute.once('close', resolve))
    expect(accepted).to.have.length(0)
    await waitFor(() => server.connectionCount === 0)
  })

  it('reports a bad frame and an oversize length prefix to onBadFrame', async () => {
    const c = await open(server.issueOffer('peer-d'))
    // type byte 99 does not decode: the server aborts the channel
    c.channel.socket.write(Uint8Array.of(1, 99))
    expect(await c.closed).to.equal(undefined)
    await waitFor(() => accepted[0].closed !== undefined)
    expect(accepted[0].closed).to.have.property('code', PipelineErrorCode.BAD_FRAME)

    const d = await open(server.issueOffer('peer-d'))
    d.channel.socket.write(Uint8Array.of(0xff, 0xff, 0xff, 0x7f))
    await d.closed
    await waitFor(() => accepted[1].closed !== undefined)
    expect(accepted[1].closed).to.have.property('code', PipelineErrorCode.BAD_FRAME)
    await waitFor(() => server.channelCount === 0)
  })

  it('cleans up on client abort, on an aborted connect and on server stop', async () => {
    const c = await open(server.issueOffer('peer-e'))
    c.channel.abort(new Error('client gave up'))
    expect((await c.closed)?.message).to.equal('client gave up')
    await waitFor(() => server.channelCount === 0 && accepted[0].closed !== undefined)

    const ctrl = new AbortController()
    ctrl.abort()
    await expect(open(server.issueOffer('peer-e'), ctrl.signal)).to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.ABORTED)
    const ctrl2 = new AbortController()
    const pending = open(server.issueOffer('peer-e'), ctrl2.signal)
    ctrl2.abort()
    await expect(pending).to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.ABORTED)

    const d = await open(server.issueOffer('peer-e'))
    server.issueOffer('peer-e')
    await server.stop()
    expect(server.pendingOffers).to.equal(0)
    await d.closed
    expect(d.channel.isOpen).to.equal(false)
    await expect(d.channel.send({ type: 'close', sessionId: 1 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.STREAM_CLOSED)
    expect(() => server.issueOffer('peer-e')).to.throw().with.property('code', DirectChannelErrorCode.NOT_STARTED)
    expect(server.connectionCount).to.equal(0)
    const leaked = process.getActiveResourcesInfo().filter(r => r === 'TLSWrap')
    expect(leaked).to.deep.equal([])
  })

  it('decodes frames split at every byte and many frames in one chunk', () => {
    const frames = [1, 2, 3].map(i => encodeInferFrameBytes({ type: 'close', sessionId: i }))
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
    let at = 0
    for (const f of frames) {
      all.set(f, at)
      at += f.length
    }
    for (const step of [1, 2, 5, all.length]) {
      const dec = new FrameDecoder(1024, inferFrameErrors)
      const out: number[] = []
      for (let i = 0; i < all.length; i += step) {
        dec.push(all.subarray(i, i + step), body => out.push(body.length))
      }
      expect(out).to.deep.equal(frames.map(f => f.length - 1))
      expect(dec.idle).to.equal(true)
    }
    expect(() => { new FrameDecoder(10, inferFrameErrors).push(Uint8Array.of(11), () => {}) }).to.throw().with.property('code', PipelineErrorCode.BAD_FRAME)
  })

  it('decodes frames read into the buffers it hands out (onread), small ones copied out of its reused scratch', () => {
    const rows = 25
    const big = new Float32Array(rows * 4096).map((_, i) => i % 1009)
    const frames = [
      encodeInferFrameBytes({ type: 'close', sessionId: 1 }),
      encodeInferFrameBytes({ type: 'forward', sessionId: 2, seq: 1, startPos: 0, tensor: f32Tensor(big, rows, 4096) }),
      encodeInferFrameBytes({ type: 'close', sessionId: 3 }),
      encodeInferFrameBytes({ type: 'close', sessionId: 4 })
    ]
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
    let at = 0
    for (const f of frames) {
      all.set(f, at)
      at += f.length
    }
    for (const step of [1, 7, 16384, all.length]) {
      const dec = new FrameDecoder(1024 * 1024, inferFrameErrors)
      const bodies: Uint8Array[] = []
      const targets = new Set<ArrayBufferLike>()
      for (let i = 0; i < all.length;) {
        const buf = dec.readBuffer()
        targets.add(buf.buffer)
        const n = Math.min(step, buf.length, all.length - i)
        buf.set(all.subarray(i, i + n))
        // what a socket leaves past `n` must not matter
        buf.fill(0xee, n, n + 64)
        dec.read(buf, n, body => bodies.push(body))
        i += n
      }
      expect(dec.idle).to.equal(true)
      // every frame still holds its bytes after the scratch buffer was reused
      expect(bodies.map(b => Array.from(b))).to.deep.equal(frames.map(f => Array.from(f.subarray(f.findIndex(b => b < 0x80) + 1))))
      // the large body was read in place: it is one of the buffers handed out
      expect(targets.has(bodies[1].buffer)).to.equal(true)
    }
  })

  it('rejects malformed offers', () => {
    const offer = server.issueOffer('peer-f')
    const bytes = encodeDirectOffer({ ...offer, host: '127.0.0.1' })
    expect(decodeDirectOffer(bytes)).to.deep.equal({ ...offer, host: '127.0.0.1' })
    expect(() => decodeDirectOffer(bytes.subarray(0, 20))).to.throw().with.property('code', DirectChannelErrorCode.BAD_OFFER)
    expect(() => decodeDirectOffer(Uint8Array.of(2, 0))).to.throw().with.property('code', DirectChannelErrorCode.BAD_OFFER)
    expect(() => encodeDirectOffer({ ...offer, psk: offer.psk.subarray(1) })).to.throw().with.property('code', DirectChannelErrorCode.BAD_OFFER)
  })

  describe('offer over libp2p', function () {
    let a: BlyLibp2p
    let b: BlyLibp2p

    before(async () => {
      a = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
      b = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    })

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()])
    })

    it('hands an offer bound to the requesting peer, and the channel works', async () => {
      await b.handle(DIRECT_OFFER_PROTOCOL, async (stream, connection) => {
        await answerDirectOffer(stream, server, connection.remotePeer.toString())
      })
      const stream = await a.dialProtocol(b.getMultiaddrs()[0], DIRECT_OFFER_PROTOCOL)
      const offer = await requestDirectOffer(stream, { remoteHost: '127.0.0.1' })
      expect(offer.host).to.equal('127.0.0.1')
      const c = await open(offer)
      expect(accepted[0].peer).to.equal(a.peerId.toString())
      const data = new Float32Array(4096).fill(0.25)
      await c.channel.send({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(data, 1, 4096) })
      const f = await c.next()
      expect(f.type === 'result' ? tensorF32(f.tensor) : undefined).to.deep.equal(data)
      await c.channel.close()

      // a stopped server answers "unavailable"
      await server.stop()
      const again = await a.dialProtocol(b.getMultiaddrs()[0], DIRECT_OFFER_PROTOCOL)
      await expect(requestDirectOffer(again, { remoteHost: '127.0.0.1' })).to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
      await b.unhandle(DIRECT_OFFER_PROTOCOL)
    })
  })
})
