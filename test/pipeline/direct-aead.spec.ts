import { createConnection, createServer } from 'node:net'
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { AeadOpener, AeadSealer, deriveAeadKeys, handshakeHalf } from '../../src/pipeline/direct-channel/aead.ts'
import {
  DIRECT_OFFER_PROTOCOL, DirectChannelErrorCode, DirectTransport, answerDirectOffer, connectDirectChannel,
  createDirectChannelServer, decodeDirectOffer, encodeDirectOffer, requestDirectOffer
} from '../../src/pipeline/direct-channel/index.ts'
import { PipelineErrorCode } from '../../src/pipeline/errors.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { f32Tensor, tensorF32 } from '../../src/protocols/infer.ts'
import { loadFixture } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { DirectChannel, DirectChannelOffer, DirectChannelServer } from '../../src/pipeline/direct-channel/index.ts'
import type { InferFrame } from '../../src/protocols/infer.ts'
import type { Fixture } from '../model/fixtures.ts'
import type { Server, Socket } from 'node:net'

interface Accepted { channel: DirectChannel, peer: string, closed?: Error | null }

/** An AEAD channel server whose channels echo every FORWARD back as a RESULT. */
function echoServer (opts: { readInPlace?: boolean, maxRecords?: number } = {}): { server: DirectChannelServer, accepted: Accepted[] } {
  const accepted: Accepted[] = []
  const server = createDirectChannelServer({
    ...opts,
    transport: DirectTransport.AEAD,
    maxFrameBytes: 4 * 1024 * 1024,
    handler: (channel, peer) => {
      const entry: Accepted = { channel, peer }
      accepted.push(entry)
      channel.attach({
        onFrame: (f) => {
          if (f.type === 'forward') {
            void channel.send({ type: 'result', sessionId: f.sessionId, seq: f.seq, startPos: f.startPos, kind: 0, tensor: f.tensor }).catch(() => {})
          }
        },
        onBadFrame: (err) => { channel.abort(err) },
        onClose: (err) => { entry.closed = err ?? null }
      })
    }
  })
  return { server, accepted }
}

interface Client { channel: DirectChannel, frames: InferFrame[], closed: Promise<Error | undefined>, next(): Promise<InferFrame> }

async function open (offer: DirectChannelOffer, init: { maxRecords?: number } = {}): Promise<Client> {
  const frames: InferFrame[] = []
  let wake: (() => void) | undefined
  let onClosed!: (err?: Error) => void
  const closed = new Promise<Error | undefined>(resolve => { onClosed = resolve })
  const channel = await connectDirectChannel(offer, {
    ...init,
    onFrame: (f) => { frames.push(f); wake?.() },
    onBadFrame: (err) => { throw err },
    onClose: (err) => { onClosed(err); wake?.() }
  })
  const arrived = (resolve: () => void): void => { wake = resolve }
  const next = async (): Promise<InferFrame> => {
    while (frames.length === 0) {
      await new Promise<void>(arrived)
    }
    return frames.shift() as InferFrame
  }
  return { channel, frames, closed, next }
}

async function waitFor (check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) {
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  expect(check()).to.equal(true)
}

/**
 * A TCP relay on 127.0.0.1 between a client and `port`: records what each
 * way carried; `alter` may change (or duplicate) client->server chunks,
 * given the byte offset of the chunk in that direction.
 */
async function relay (port: number, alter?: (chunk: Buffer, offset: number) => Buffer): Promise<{ server: Server, port: number, upstream: Buffer[], stop(): Promise<void> }> {
  const upstream: Buffer[] = []
  const sockets = new Set<Socket>()
  const server = createServer((down) => {
    const up = createConnection({ host: '127.0.0.1', port })
    sockets.add(down)
    sockets.add(up)
    let offset = 0
    down.on('data', (chunk: Buffer) => {
      upstream.push(Buffer.from(chunk))
      const out = alter == null ? chunk : alter(chunk, offset)
      offset += chunk.length
      up.write(out)
    })
    up.on('data', (chunk: Buffer) => { down.write(chunk) })
    down.on('close', () => { up.destroy() })
    up.on('close', () => { down.destroy() })
    down.on('error', () => {})
    up.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  return {
    server,
    port: typeof addr === 'object' && addr != null ? addr.port : 0,
    upstream,
    stop: async () => {
      for (const s of sockets) {
        s.destroy()
      }
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

/** Client hello (85) + the client's token record (4 + 16 + 16). */
const HANDSHAKE_UP_BYTES = 85 + 36

const tensorOf = (n: number, salt: number): Float32Array => new Float32Array(n).map((_, j) => (j * 7 + salt) % 1013 - 500.5)

describe('direct channel, AEAD transport', function () {
  let server: DirectChannelServer
  let accepted: Accepted[]

  beforeEach(async () => {
    ({ server, accepted } = echoServer())
    await server.start()
  })

  afterEach(async () => {
    await server.stop()
  })

  async function roundTrip (srv: DirectChannelServer, acc: Accepted[]): Promise<void> {
    const offer = srv.issueOffer('peer-a')
    expect(offer.transport).to.equal(DirectTransport.AEAD)
    const c = await open({ ...offer, host: '127.0.0.1' })
    expect(acc.map(a => a.peer)).to.deep.equal(['peer-a'])
    expect(srv.pendingOffers).to.equal(0)
    const sizes = [1, 4096, 256 * 1024, 3 * 1024 * 1024 / 4, 5, 70_000]
    const sent = sizes.map((n, i) => tensorOf(n, i))
    await Promise.all(sent.map(async (data, i) => c.channel.send({ type: 'forward', sessionId: 9, seq: i + 1, startPos: i, tensor: f32Tensor(data, 1, data.length) })))
    for (let i = 0; i < sent.length; i++) {
      const f = await c.next()
      expect(f.type).to.equal('result')
      if (f.type !== 'result') {
        return
      }
      expect(f.seq).to.equal(i + 1)
      expect(tensorF32(f.tensor)).to.deep.equal(sent[i])
    }
    expect(c.channel.bytesIn).to.equal(c.channel.bytesOut)
    expect(c.channel.readsInPlace).to.equal(true)
    await c.channel.close()
    expect(await c.closed).to.equal(undefined)
    await waitFor(() => srv.channelCount === 0 && srv.connectionCount === 0)
  }

  it('round-trips infer frames, large and small, in order (both sides reading in place)', async () => {
    await roundTrip(server, accepted)
    expect(accepted[0].channel.readsInPlace).to.equal(true)
  })

  it('round-trips the same with the server reading data events (readInPlace: false)', async () => {
    const other = echoServer({ readInPlace: false })
    await other.server.start()
    try {
      await roundTrip(other.server, other.accepted)
      expect(other.accepted[0].channel.readsInPlace).to.equal(false)
    } finally {
      await other.server.stop()
    }
  })

  it('a tampered ciphertext byte fails authentication and closes the channel; nothing of that frame is delivered', async () => {
    const offer = server.issueOffer('peer-t')
    // flip one byte inside the first frame's ciphertext (past the handshake and the 4-byte length header)
    const target = HANDSHAKE_UP_BYTES + 4 + 100
    const r = await relay(offer.port, (chunk, offset) => {
      if (offset <= target && target < offset + chunk.length) {
        const out = Buffer.from(chunk)
        out[target - offset] ^= 0x01
        return out
      }
      return chunk
    })
    try {
      const c = await open({ ...offer, host: '127.0.0.1', port: r.port })
      const data = tensorOf(4096, 3)
      await c.channel.send({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(data, 1, data.length) })
      await c.closed
      await waitFor(() => accepted[0]?.closed !== undefined)
      expect(accepted[0].closed).to.have.property('code', DirectChannelErrorCode.AUTH_FAILED)
      expect(c.frames).to.deep.equal([])
      expect(accepted[0].channel.bytesIn).to.equal(0)
    } finally {
      await r.stop()
    }
  })

  it('a record replayed inside the stream fails authentication (each record has its own nonce)', async () => {
    const offer = server.issueOffer('peer-r')
    let frameRecord: Buffer | undefined
    const r = await relay(offer.port, (chunk, offset) => {
      // the first frame's record, sent twice
      if (frameRecord == null && offset + chunk.length > HANDSHAKE_UP_BYTES) {
        frameRecord = chunk.subarray(Math.max(0, HANDSHAKE_UP_BYTES - offset))
        return Buffer.concat([chunk, frameRecord])
      }
      return chunk
    })
    try {
      const c = await open({ ...offer, host: '127.0.0.1', port: r.port })
      const data = tensorOf(64, 5)
      await c.channel.send({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(data, 1, data.length) })
      // the original is delivered, the copy closes the channel
      await c.closed
      await waitFor(() => accepted[0]?.closed !== undefined)
      expect(accepted[0].closed).to.have.property('code', DirectChannelErrorCode.AUTH_FAILED)
      expect(accepted[0].channel.bytesIn).to.equal(c.channel.bytesOut)
    } finally {
      await r.stop()
    }
  })

  it('refuses a wrong token, a wrong PSK, a used offer and a replayed handshake', async () => {
    const offer = { ...server.issueOffer('peer-b'), host: '127.0.0.1' }
    // wrong token: refused, and the offer is burnt
    await expect(connectDirectChannel({ ...offer, token: offer.token.map(b => b ^ 1) }, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    await expect(connectDirectChannel(offer, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    // wrong PSK: the keys differ, the token record does not open
    const other = { ...server.issueOffer('peer-b'), host: '127.0.0.1' }
    await expect(connectDirectChannel({ ...other, psk: other.psk.map(b => b ^ 1) }, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    // a good offer works once; its handshake bytes replayed on a new connection are refused
    const good = server.issueOffer('peer-b')
    const r = await relay(good.port)
    try {
      const c = await open({ ...good, host: '127.0.0.1', port: r.port })
      await c.channel.close()
      const recorded = Buffer.concat(r.upstream).subarray(0, HANDSHAKE_UP_BYTES)
      const replay = createConnection({ host: '127.0.0.1', port: good.port })
      const answer: Buffer[] = []
      replay.on('data', (d: Buffer) => answer.push(d))
      replay.on('error', () => {})
      replay.write(recorded)
      await new Promise(resolve => replay.once('close', resolve))
      // no server hello (the offer is used), and no channel
      expect(Buffer.concat(answer).length).to.equal(0)
    } finally {
      await r.stop()
    }
    await expect(connectDirectChannel({ ...good, host: '127.0.0.1' }, { onFrame: () => {}, onBadFrame: () => {}, onClose: () => {} }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    expect(accepted).to.have.length(1)
    await waitFor(() => server.connectionCount === 0)
  })

  it('seals under a new nonce every record and opens records only in order, under their direction key', () => {
    const psk = new Uint8Array(32).fill(9)
    const client = handshakeHalf()
    const stage = handshakeHalf()
    const ck = deriveAeadKeys(psk, client, stage, true)
    const sk = deriveAeadKeys(psk, stage, client, false)
    const sealer = new AeadSealer(ck.clientToStage, 2 ** 48)
    const plain = new Uint8Array(40_000).fill(42)
    const records: Buffer[][] = []
    for (let i = 0; i < 200; i++) {
      const parts: Buffer[] = []
      sealer.seal([plain], b => parts.push(b))
      records.push(parts)
    }
    expect(sealer.counter).to.equal(200)
    // the same plaintext never gives the same ciphertext or tag
    expect(new Set(records.map(p => Buffer.concat(p.slice(1)).toString('hex'))).size).to.equal(200)
    expect(new Set(records.map(p => p[p.length - 1].toString('hex'))).size).to.equal(200)
    const whole = (p: Buffer[]): { header: Buffer, sealed: Buffer } => ({ header: p[0], sealed: Buffer.concat(p.slice(1)) })
    // the stage opens them in order with its view of the client's key
    const opener = new AeadOpener(sk.clientToStage, 2 ** 48)
    for (const p of records.slice(0, 3)) {
      const { header, sealed } = whole(p)
      expect(Array.from(opener.open(header, sealed))).to.deep.equal(Array.from(plain))
    }
    // out of order (record 4 where 3 is due), the other direction's key, a changed length header: refused
    expect(() => opener.open(whole(records[4]).header, whole(records[4]).sealed)).to.throw().with.property('code', DirectChannelErrorCode.AUTH_FAILED)
    const wrongDirection = new AeadOpener(sk.stageToClient, 2 ** 48)
    expect(() => wrongDirection.open(whole(records[0]).header, whole(records[0]).sealed)).to.throw().with.property('code', DirectChannelErrorCode.AUTH_FAILED)
    const fresh = new AeadOpener(sk.clientToStage, 2 ** 48)
    const header = Buffer.from(whole(records[0]).header)
    header[0] ^= 1
    expect(() => fresh.open(header, whole(records[0]).sealed)).to.throw().with.property('code', DirectChannelErrorCode.AUTH_FAILED)
    // directions have different keys: same counter, same plaintext, different ciphertext
    const back = new AeadSealer(sk.stageToClient, 2 ** 48)
    const parts: Buffer[] = []
    back.seal([plain], b => parts.push(b))
    expect(Buffer.concat(parts.slice(1)).equals(Buffer.concat(records[0].slice(1)))).to.equal(false)
  })

  it('closes the channel with RECORDS_EXHAUSTED when a direction used up its counter', async () => {
    await server.stop();
    ({ server, accepted } = echoServer({ maxRecords: 3 }))
    await server.start()
    // records per direction: the proof, then two frames
    const c = await open({ ...server.issueOffer('peer-x'), host: '127.0.0.1' }, { maxRecords: 3 })
    const data = tensorOf(16, 1)
    for (const seq of [1, 2]) {
      await c.channel.send({ type: 'forward', sessionId: 1, seq, startPos: 0, tensor: f32Tensor(data, 1, 16) })
      expect((await c.next()).type).to.equal('result')
    }
    await expect(c.channel.send({ type: 'forward', sessionId: 1, seq: 3, startPos: 0, tensor: f32Tensor(data, 1, 16) }))
      .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.RECORDS_EXHAUSTED)
    expect(await c.closed).to.have.property('code', DirectChannelErrorCode.RECORDS_EXHAUSTED)
    expect(c.channel.isOpen).to.equal(false)
    await expect(c.channel.send({ type: 'close', sessionId: 1 })).to.eventually.be.rejected.with.property('code', PipelineErrorCode.STREAM_CLOSED)
    await waitFor(() => server.channelCount === 0)
  })

  it('offers say their transport; a client that knows only TLS gets "unavailable" from an AEAD stage', async () => {
    const offer = server.issueOffer('peer-o')
    const bytes = encodeDirectOffer({ ...offer, host: '127.0.0.1' })
    expect(bytes[0]).to.equal(2)
    expect(decodeDirectOffer(bytes)).to.deep.equal({ ...offer, host: '127.0.0.1' })
    const tls = encodeDirectOffer({ ...offer, transport: DirectTransport.TLS, host: '' })
    expect(tls[0]).to.equal(1)
    expect(decodeDirectOffer(tls).transport).to.equal(DirectTransport.TLS)

    const a = await startNode()
    const b = await startNode()
    try {
      await b.handle(DIRECT_OFFER_PROTOCOL, async (stream, connection) => {
        await answerDirectOffer(stream, server, connection.remotePeer.toString())
      })
      const s1 = await a.dialProtocol(b.getMultiaddrs()[0], DIRECT_OFFER_PROTOCOL)
      const got = await requestDirectOffer(s1, { remoteHost: '127.0.0.1' })
      expect(got.transport).to.equal(DirectTransport.AEAD)
      const c = await open(got)
      expect(accepted[0].peer).to.equal(a.peerId.toString())
      await c.channel.close()
      const s2 = await a.dialProtocol(b.getMultiaddrs()[0], DIRECT_OFFER_PROTOCOL)
      await expect(requestDirectOffer(s2, { remoteHost: '127.0.0.1', transports: [DirectTransport.TLS] }))
        .to.eventually.be.rejected.with.property('code', DirectChannelErrorCode.REFUSED)
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  })

  describe('stage hop with fallback', function () {
    this.timeout(60_000)
    let fixture: Fixture
    let client: BlyLibp2p
    const stages: TestStage[] = []

    before(async () => {
      await selectBackend('wasm')
      fixture = await loadFixture('untied-f32')
      client = await startNode()
      stages.push(
        await startStage(fixture, 0, 2, { directChannel: { transport: DirectTransport.AEAD } }),
        // an AEAD channel nobody can reach: the server listens on 127.0.0.1, the offer names 127.0.0.2
        await startStage(fixture, 2, 3, { directChannel: { transport: DirectTransport.AEAD, host: '127.0.0.1', advertiseHost: '127.0.0.2' } })
      )
    })

    after(async () => {
      await client?.stop()
      await Promise.allSettled(stages.map(async s => s.stop()))
    })

    it('a StageClient takes the AEAD channel where it works and libp2p where it does not; steps agree', async () => {
      const h = fixture.config.hiddenSize
      const input = new Float32Array(h).map((_, i) => Math.sin(i) * 0.5)
      const results: Float32Array[] = []
      for (const [s, direct, want] of [[stages[0], undefined, InferTransport.DIRECT], [stages[0], false, InferTransport.LIBP2P], [stages[1], undefined, InferTransport.LIBP2P]] as const) {
        const c = await StageClient.open({ libp2p: client, peer: s.node.getMultiaddrs(), modelId: MODEL_ID, start: s.layers.start, end: s.layers.end, sessionId: 3, directChannel: direct })
        try {
          expect(c.transport).to.equal(want)
          if (s === stages[0]) {
            results.push((await c.forward(input, 1, h, 0)).data)
          }
        } finally {
          await c.close()
        }
      }
      expect(stages.map(s => s.server.stats.direct)).to.deep.equal([1, 0])
      expect(Array.from(results[0])).to.deep.equal(Array.from(results[1]))
    })
  })
})
