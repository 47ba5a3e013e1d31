/**
 * Issue 5: many sessions opening at once to a stage the client is not
 * connected to yet. They share the one connection the dial makes, and all
 * open their streams on it at once, before the stage has finished upgrading
 * its end; libp2p's default limit on such "early" streams (10) then reset the
 * whole connection and left the client a connection that looked open but
 * whose muxer was closed, so every later session to that stage failed too.
 */
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { selectBackend } from '../../src/model/backend.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { blyConnectionEncrypter } from '../../src/net/libp2p-node.ts'
import { InferTransport } from '../../src/pipeline/infer-channel.ts'
import { StageClient } from '../../src/pipeline/stage-client.ts'
import { embedData } from '../../src/pipeline/stage-layers.ts'
import { createStageServer } from '../../src/pipeline/stage-server.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { InferTransportValue } from '../../src/pipeline/infer-channel.ts'
import type { Fixture } from '../model/fixtures.ts'
import type { Libp2p } from '@libp2p/interface'

const SESSIONS = 50
const MAX_LENGTH = 16

describe('pipeline/concurrent-open: many sessions to a stage not connected yet', function () {
  this.timeout(60_000)
  let fixture: Fixture
  let local: LayerRange
  let prompt: Float32Array
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    prompt = await embedData(local, fixture.expected.greedy.prompt)
  })

  afterEach(async () => {
    await Promise.allSettled(cleanup.splice(0).reverse().map(async f => f()))
  })

  after(() => {
    local?.dispose()
  })

  async function client (): Promise<BlyLibp2p> {
    const node = await startNode()
    cleanup.push(async () => { await node.stop() })
    return node
  }

  async function stage (): Promise<TestStage> {
    const s = await startStage(fixture, 0, 2, { maxSessions: SESSIONS, maxCachePositions: SESSIONS * MAX_LENGTH })
    cleanup.push(async () => { await s.stop() })
    return s
  }

  /** Opens `n` sessions at once (each runs one step, then stays open); the settled results in order. */
  async function openAll (libp2p: Libp2p, peer: Libp2p, n: number, directChannel: boolean, firstId = 1): Promise<Array<PromiseSettledResult<StageClient>>> {
    await libp2p.peerStore.merge(peer.peerId, { multiaddrs: peer.getMultiaddrs() })
    const h = fixture.config.hiddenSize
    const rows = prompt.length / h
    return Promise.allSettled(Array.from({ length: n }, async (_, i) => {
      const c = await StageClient.open({ libp2p, peer: peer.peerId, modelId: MODEL_ID, start: 0, end: 2, sessionId: firstId + i, maxLength: MAX_LENGTH, directChannel })
      cleanup.push(async () => { await c.close() })
      const out = await c.forward(prompt, rows, h, 0)
      expect(out.rows).to.equal(rows)
      return c
    }))
  }

  function failures (results: Array<PromiseSettledResult<unknown>>): string[] {
    return results.flatMap((r, i) => r.status === 'rejected' ? [`#${i}: ${String(r.reason?.message ?? r.reason)}`] : [])
  }

  for (const [directChannel, transport] of [[true, InferTransport.DIRECT], [false, InferTransport.LIBP2P]] as Array<[boolean, InferTransportValue]>) {
    it(`${SESSIONS} sessions opened at once all open, over one connection (${transport})`, async () => {
      const c = await client()
      const s = await stage()
      expect(c.getConnections(s.node.peerId)).to.have.lengthOf(0)

      const results = await openAll(c, s.node, SESSIONS, directChannel)

      expect(failures(results)).to.deep.equal([])
      expect(results.map(r => (r as PromiseFulfilledResult<StageClient>).value.transport)).to.deep.equal(Array(SESSIONS).fill(transport))
      // the concurrent dials joined one: one connection, still usable
      expect(c.getConnections(s.node.peerId)).to.have.lengthOf(1)
      expect(s.server.stats.sessions).to.equal(SESSIONS)
    })
  }

  it('a stage that reset the connection (libp2p default early-stream limit) is dialled afresh, not left failing', async () => {
    // a stage node on stock yamux settings (a blyd release before issue 5's fix)
    const node = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [blyConnectionEncrypter()],
      streamMuxers: [yamux()]
    })
    cleanup.push(async () => { await node.stop() })
    const layers = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 2 })
    cleanup.push(async () => { layers.dispose() })
    const server = createStageServer({ libp2p: node, logger: silentLogger() }, { modelId: MODEL_ID, layers, maxSessions: SESSIONS, maxCachePositions: SESSIONS * MAX_LENGTH })
    await server.start()
    cleanup.push(async () => { await server.stop() })
    const c = await client()

    // a burst past that limit: the stage resets the connection under (some of) these sessions
    const burst = await openAll(c, node, 20, false)
    // whatever the burst got, the connections it leaves can open streams, and so the next session opens
    const next = await openAll(c, node, 1, false, 100)
    expect(failures(next), `burst failures: ${failures(burst).length}`).to.deep.equal([])
  })
})
