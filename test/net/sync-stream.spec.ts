import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { pEvent } from 'p-event'
import { createChainStore, createSignerFromSeed } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { BLOCK_SYNC_PROTOCOL } from '../../src/net/constants.ts'
import { NetErrorCode } from '../../src/net/errors.ts'
import { FrameStream } from '../../src/net/frame-stream.ts'
import { SyncClient } from '../../src/net/sync-client.ts'
import { syncFrameCodec } from '../../src/net/sync-frames.ts'
import { serveSyncStream } from '../../src/net/sync-server.ts'
import { HaveStatus, SyncErrorCode, encodeSyncFrame } from '../../src/protocols/block-sync.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { startNode, stopAll } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { SyncFrame } from '../../src/protocols/block-sync.ts'
import type { PeerId, Stream, StreamCloseEvent } from '@libp2p/interface'

const id = (n: number): Uint8Array => new Uint8Array(32).fill(n)

async function expectCode (p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p
  } catch (err: any) {
    expect(err?.code, err?.message).to.equal(code)
    return
  }
  expect.fail(`expected ${code}, but it resolved`)
}

describe('net: block-sync client and server on one stream', function () {
  this.timeout(20_000)
  let dir: string
  let store: ChainStore
  let peerId: PeerId
  const clients: SyncClient[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bly-net-wire-'))
    store = createChainStore({ path: dir, fsync: false })
    await store.start()
    const key = await generateKeyPair('Ed25519')
    peerId = peerIdFromPrivateKey(key)
    const signer = createSignerFromSeed(key.raw)
    await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: new Uint8Array(3000).fill(5), chunkSize: 1024 }, signer)
  })

  after(async () => {
    await Promise.allSettled(clients.map(async c => c.close()))
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** a client whose stream's other end is served by serveSyncStream (or by nothing) */
  async function pair (serve: boolean, init: { maxInflight?: number, serverInflight?: number, requestTimeoutMs?: number, idleTimeoutMs?: number } = {}): Promise<{ client: SyncClient, inbound: Stream }> {
    const [outbound, inbound] = await streamPair()
    if (serve) {
      serveSyncStream(inbound, { store, maxMessageBytes: 1 << 20, idleTimeoutMs: 5_000, maxInflight: init.serverInflight ?? 8, log: silentLogger().forComponent('test:sync-server') })
    }
    let opened = false
    const client = new SyncClient({
      peerId,
      openStream: async () => {
        if (opened) {
          throw new Error('only one stream in this test')
        }
        opened = true
        return outbound
      },
      maxMessageBytes: 1 << 20,
      idleTimeoutMs: init.idleTimeoutMs ?? 5_000,
      requestTimeoutMs: init.requestTimeoutMs ?? 5_000,
      maxInflight: init.maxInflight ?? 8
    })
    clients.push(client)
    return { client, inbound }
  }

  it('answers tips, headers, have and chunks from the store', async () => {
    const { client } = await pair(true)
    const { ids } = await client.request({ type: 'get-tips' })
    expect(ids).to.have.length(1)
    const [tip] = ids
    const { headers } = await client.request({ type: 'get-headers', ids: [tip, id(99)] })
    expect(headers[0]).to.deep.equal(await store.getEncoded(tip))
    expect(headers[1]).to.equal(undefined)
    const { status } = await client.request({ type: 'get-have', ids: [tip, id(99)] })
    expect(status).to.deep.equal([HaveStatus.Complete, HaveStatus.Unknown])
    const chunks = await Promise.all([0, 1, 2].map(async index => client.request({ type: 'get-chunk', id: tip, index })))
    expect(chunks.map(c => c.data.length)).to.deep.equal([1024, 1024, 952])
    await expectCode(client.request({ type: 'get-chunk', id: id(99), index: 0 }), NetErrorCode.NOT_FOUND)
  })

  it('answers BUSY past the per-stream limit instead of queueing', async () => {
    const [outbound, inbound] = await streamPair()
    serveSyncStream(inbound, { store, maxMessageBytes: 1 << 20, idleTimeoutMs: 5_000, maxInflight: 1, log: silentLogger().forComponent('test:sync-server') })
    const responses: SyncFrame[] = []
    const frames = new FrameStream(outbound, {
      codec: syncFrameCodec,
      maxFrameBytes: 1 << 20,
      idleTimeoutMs: 5_000,
      isIdle: () => false,
      onFrame: (frame) => { responses.push(frame) },
      onClose: () => {}
    })
    // three requests in one write arrive in one message event, before the first is answered
    const parts = [1, 2, 3].map(n => {
      const bytes = encodeSyncFrame({ id: n, body: { type: 'get-tips' } })
      return [Uint8Array.of(bytes.length), bytes]
    }).flat()
    outbound.send(Buffer.concat(parts))
    const deadline = Date.now() + 5_000
    while (responses.length < 3 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    await frames.close()
    const byId = new Map(responses.map(r => [r.id, r.body]))
    expect(byId.get(1)?.type).to.equal('tips')
    expect(byId.get(2)).to.deep.include({ type: 'error', code: SyncErrorCode.BUSY })
    expect(byId.get(3)).to.deep.include({ type: 'error', code: SyncErrorCode.BUSY })
  })

  it('times out a request the remote never answers, and honours an abort signal', async () => {
    const { client } = await pair(false, { requestTimeoutMs: 200 })
    await expectCode(client.request({ type: 'get-tips' }), NetErrorCode.TIMEOUT)
    const controller = new AbortController()
    const pending = client.request({ type: 'get-tips' }, { signal: controller.signal, timeoutMs: 60_000 })
    controller.abort(new Error('caller gave up'))
    try {
      await pending
      expect.fail('resolved')
    } catch (err: any) {
      expect(err.message).to.equal('caller gave up')
    }
  })

  it('closes a request stream that sat idle, on both ends', async () => {
    const { client, inbound } = await pair(true, { idleTimeoutMs: 100 })
    const closed = pEvent(inbound, 'close')
    await client.request({ type: 'get-tips' })
    await closed
    expect(inbound.status).to.equal('closed')
  })

  it('aborts a stream that sends a malformed frame, failing its pending requests', async () => {
    const { client, inbound } = await pair(false)
    const pending = client.request({ type: 'get-tips' })
    await pEvent(inbound, 'message')
    const closed = pEvent(inbound, 'close')
    inbound.send(new Uint8Array([3, 0x08, 0x01, 0x32])) // a length-prefixed frame with an unknown field
    await expectCode(pending, NetErrorCode.STREAM_CLOSED)
    await closed
  })
})

describe('net: block-sync streams between real nodes', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []

  after(async () => {
    await stopAll(nodes)
  })

  it('aborts a /bly/blocks/1.0.0 stream with a malformed length prefix (ff x10 then 01) at once, and serves the next stream', async () => {
    // an idle timeout far past the test's own: a stream left waiting for more bytes would time the test out
    const server = await startNode({ blockSync: { idleTimeoutMs: 10 * 60_000 } })
    const client = await startNode()
    nodes.push(server, client)
    const stream = await client.net.libp2p.dialProtocol(server.net.libp2p.getMultiaddrs(), BLOCK_SYNC_PROTOCOL)
    const closed = pEvent<'close', StreamCloseEvent>(stream, 'close')
    stream.send(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))
    const evt = await closed
    // aborted by the server (a reset), not closed gracefully as an idle stream is
    expect(evt.error, 'the stream ended without an error').to.be.an('error')
    expect(stream.status).to.equal('reset')
    // the connection and the protocol handler are unharmed: a well-formed request on a new stream is answered
    const sync = new SyncClient({
      peerId: server.net.libp2p.peerId,
      openStream: async (signal) => client.net.libp2p.dialProtocol(server.net.libp2p.peerId, BLOCK_SYNC_PROTOCOL, { signal }),
      maxMessageBytes: 1 << 20,
      idleTimeoutMs: 5_000,
      requestTimeoutMs: 10_000,
      maxInflight: 1
    })
    try {
      const { ids } = await sync.request({ type: 'get-tips' })
      expect(ids).to.deep.equal([])
    } finally {
      await sync.close()
    }
  })
})
