import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { createBlyLibp2p, DHT_PROTOCOL } from '../../src/net/index.ts'
import { RecordErrorCode } from '../../src/net/records/errors.ts'
import { createBlyDhtRecords, createNodeAnnouncer, createSwarmView, discoverSpans, nodeRecordKey, RECORD_PROTOCOL, verifyNodeRecord } from '../../src/net/records/index.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { NODE_RECORD_VERSION, signNodeRecord } from '../../src/protocols/node-record.ts'
import { waitFor } from './helpers.ts'
import type { BlyLibp2p } from '../../src/net/index.ts'
import type { LiveSpan, NodeAnnouncer, NodeAnnouncerInit, SwarmView } from '../../src/net/records/index.ts'
import type { NodeRecord } from '../../src/protocols/node-record.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { SingleKadDHT } from '@libp2p/kad-dht'

interface Peer {
  libp2p: BlyLibp2p
  privateKey: PrivateKey
}

const LAYERS = 16

async function startPeer (): Promise<Peer> {
  const privateKey = await generateKeyPair('Ed25519')
  const records = createBlyDhtRecords()
  const libp2p = await createBlyLibp2p({
    privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    dhtValidator: records.validator,
    dhtSelector: records.selector
  })
  return { libp2p, privateKey }
}

/** Connect every pair and wait until every DHT routing table holds all the others. */
async function mesh (peers: Peer[]): Promise<void> {
  for (let i = 0; i < peers.length; i++) {
    for (let j = i + 1; j < peers.length; j++) {
      await peers[i].libp2p.dial(peers[j].libp2p.getMultiaddrs()[0])
    }
  }
  await waitFor('DHT routing tables', () => peers.every(p => (p.libp2p.services.dht as SingleKadDHT).routingTable.size >= peers.length - 1))
}

/** Put raw bytes under `key` from `from`; returns how many remote peers stored them. */
async function rawPut (from: Peer, key: Uint8Array, value: Uint8Array): Promise<number> {
  let stored = 0
  for await (const event of from.libp2p.services.dht.put(key, value, { signal: AbortSignal.timeout(10_000) })) {
    if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE') {
      stored++
    }
  }
  return stored
}

/** The value `reader` gets for `key` from the DHT, or undefined. */
async function rawGet (reader: Peer, key: Uint8Array): Promise<Uint8Array | undefined> {
  let value: Uint8Array | undefined
  try {
    for await (const event of reader.libp2p.services.dht.get(key, { signal: AbortSignal.timeout(10_000) })) {
      if (event.name === 'VALUE') {
        value = event.value
      }
    }
  } catch {
    // no value anywhere: the query ends with an error
  }
  return value
}

describe('net/records: announcements and the swarm view over a real DHT', function () {
  this.timeout(60_000)
  const modelId = new Uint8Array(randomBytes(32))
  const peers: Peer[] = []
  const announcers: NodeAnnouncer[] = []
  const views: SwarmView[] = []

  afterEach(async () => {
    await Promise.allSettled(views.map(async v => v.stop()))
    await Promise.allSettled(announcers.map(async a => a.stop()))
    await Promise.allSettled(peers.map(async p => p.libp2p.stop()))
    views.length = 0
    announcers.length = 0
    peers.length = 0
  })

  async function startPeers (n: number): Promise<Peer[]> {
    for (let i = 0; i < n; i++) {
      peers.push(await startPeer())
    }
    await mesh(peers)
    return [...peers]
  }

  async function announce (peer: Peer, start: number, end: number, init: Partial<NodeAnnouncerInit> = {}): Promise<NodeAnnouncer> {
    const announcer = createNodeAnnouncer({ libp2p: peer.libp2p, privateKey: peer.privateKey, logger: silentLogger() }, {
      modelId,
      start,
      end,
      backend: 'cpu',
      holdsEmbedding: start === 0,
      holdsHead: end === LAYERS,
      stats: () => ({ throughputMilli: 1000 * (start + 1), freeSessions: end - start, queueLength: start % 3 }),
      ...init
    })
    announcers.push(announcer)
    await announcer.start()
    return announcer
  }

  const spanOf = (spans: LiveSpan[], peer: Peer): LiveSpan | undefined => spans.find(s => s.peerId.equals(peer.libp2p.peerId))

  it('a fifth node discovers the spans four nodes announce, with live stats and RTTs', async () => {
    const [a, b, c, d, reader] = await startPeers(5)
    const ranges: Array<[Peer, number, number]> = [[a, 0, 4], [b, 4, 10], [c, 10, 16], [d, 2, 12]]
    for (const [peer, start, end] of ranges) {
      const announcer = await announce(peer, start, end)
      expect(announcer.lastResult?.putPeers, 'peers that stored the record').to.be.greaterThan(0)
      expect(announcer.lastResult?.unprovidedLayers).to.equal(0)
    }

    const spans = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS })
    expect(spans.map(s => [s.start, s.end])).to.deep.equal([[0, 4], [2, 12], [4, 10], [10, 16]])
    for (const [peer, start, end] of ranges) {
      const span = spanOf(spans, peer)
      expect(span, `span of [${start}, ${end})`).to.not.equal(undefined)
      if (span == null) {
        continue
      }
      expect(span.source).to.equal('direct')
      expect(span.rttMs).to.be.a('number').and.at.least(0)
      expect(span.backend).to.equal('cpu')
      expect(span.throughputMilli).to.equal(1000 * (start + 1))
      expect(span.freeSessions).to.equal(end - start)
      expect(span.queueLength).to.equal(start % 3)
      expect(span.holdsEmbedding).to.equal(start === 0)
      expect(span.holdsHead).to.equal(end === LAYERS)
      expect(span.expiresAt).to.be.greaterThan(span.lastSeen)
      expect(span.addrs.map(ma => ma.toString())).to.include(peer.libp2p.getMultiaddrs()[0].toString())
    }

    // the DHT alone (no direct requests) gives the same spans
    const fromDht = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS, direct: false })
    expect(fromDht.map(s => [s.start, s.end])).to.deep.equal([[0, 4], [2, 12], [4, 10], [10, 16]])
    expect(fromDht.every(s => s.source === 'dht' && typeof s.rttMs === 'number')).to.equal(true)

    // an announcing node sees itself too, and another model has no spans
    const own = await discoverSpans(a.libp2p, { modelId, layers: LAYERS })
    expect(spanOf(own, a)?.source).to.equal('self')
    expect(own).to.have.length(4)
    expect(await discoverSpans(reader.libp2p, { modelId: new Uint8Array(32), layers: LAYERS })).to.deep.equal([])
  })

  it('remote nodes refuse records with a bad signature, the wrong peer or an expired date', async () => {
    const [a, b, c] = await startPeers(3)
    const key = nodeRecordKey(modelId, a.libp2p.peerId)
    const base = (overrides: Partial<NodeRecord> = {}): NodeRecord => ({
      version: NODE_RECORD_VERSION,
      peerId: a.libp2p.peerId.toMultihash().bytes,
      addrs: [],
      modelId,
      start: 0,
      end: 2,
      holdsEmbedding: true,
      holdsHead: false,
      movable: false,
      memoryBytes: 0,
      weightsVersion: new Uint8Array(0),
      backend: 'cpu',
      throughputMilli: 1,
      freeSessions: 1,
      queueLength: 0,
      seq: 1,
      expiresAt: Date.now() + 60_000,
      ...overrides
    })
    // signed by b but claiming to be a's record
    const forged = await signNodeRecord({ ...base(), peerId: b.libp2p.peerId.toMultihash().bytes }, b.privateKey)
    expect(await rawPut(a, key, forged)).to.equal(0)
    // a's own record with a flipped signature bit
    const good = await signNodeRecord(base(), a.privateKey)
    const badSig = new Uint8Array(good)
    badSig[badSig.length - 1] ^= 1
    expect(await rawPut(a, key, badSig)).to.equal(0)
    // a's own, validly signed record, expired ten minutes ago
    const expired = await signNodeRecord(base({ expiresAt: Date.now() - 600_000 }), a.privateKey)
    expect(await rawPut(a, key, expired)).to.equal(0)
    // none of them is stored anywhere but the putter (which never validates its own put)
    expect(await rawGet(c, key)).to.equal(undefined)

    // the same path accepts a good record, and peers return it
    expect(await rawPut(a, key, good)).to.equal(2)
    expect(await rawGet(c, key)).to.deep.equal(good)
  })

  it('the newest record wins in the DHT and peers refuse replays of older ones', async () => {
    const [a, b, reader] = await startPeers(4)
    const announcer = await announce(a, 0, 4, { serveRecords: false })
    const first = announcer.lastResult?.seq ?? Infinity
    const second = await announcer.announce()
    expect(second.seq).to.be.greaterThan(first)
    const key = nodeRecordKey(modelId, a.libp2p.peerId)
    const got = await rawGet(reader, key)
    const current = await verifyNodeRecord(got ?? new Uint8Array(0))
    expect(current.record.seq).to.equal(second.seq)

    // b replays an older, validly signed, unexpired record of a: the peers that
    // accepted the newer one refuse it; only a (which never validates its own
    // puts) takes it, and b keeps it locally
    const older = await signNodeRecord({ ...current.record, seq: first }, a.privateKey)
    expect(await rawPut(b, key, older)).to.equal(1)
    // the reader sees the older copies of a and b next to its own newer one and selects the newest
    const best = await rawGet(reader, key)
    expect((await verifyNodeRecord(best ?? new Uint8Array(0))).record.seq).to.equal(second.seq)
    // and corrected b's copy on the way
    const fromB = await rawGet(b, key)
    expect((await verifyNodeRecord(fromB ?? new Uint8Array(0))).record.seq).to.equal(second.seq)
  })

  it('moveTo re-announces another span with a newer record, directly and in the DHT; movable and memory travel with it', async () => {
    const [a, reader] = await startPeers(3)
    const announcer = await announce(a, 0, 8, { movable: true, memoryBytes: 123_456_789 })
    const before = spanOf(await discoverSpans(reader.libp2p, { modelId, layers: LAYERS }), a)
    expect(before).to.include({ start: 0, end: 8, movable: true, memoryBytes: 123_456_789 })
    const moved = await announcer.moveTo(8, 16)
    expect(moved?.seq).to.be.greaterThan(before?.seq ?? Infinity)
    // asked directly: the new span at once
    const after = spanOf(await discoverSpans(reader.libp2p, { modelId, layers: LAYERS }), a)
    expect(after).to.include({ start: 8, end: 16, source: 'direct', movable: true })
    // and the DHT holds the newer record too
    const stored = await verifyNodeRecord(await rawGet(reader, nodeRecordKey(modelId, a.libp2p.peerId)) ?? new Uint8Array(0))
    expect(stored.record).to.include({ start: 8, end: 16, seq: moved?.seq })
    // an empty span is refused with a code and the announced one stays
    await expect(announcer.moveTo(8, 8)).to.eventually.be.rejected.with.property('code', RecordErrorCode.INVALID_ARGUMENT)
    expect(spanOf(await discoverSpans(reader.libp2p, { modelId, layers: LAYERS }), a)).to.include({ start: 8, end: 16 })
  })

  it('a cleanly stopped announcer disappears at once (tombstone), even while its node runs', async () => {
    const [a, b, reader] = await startPeers(3)
    const announcer = await announce(a, 0, 8)
    await announce(b, 8, 16)
    const before = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS })
    expect(before.map(s => s.start)).to.deep.equal([0, 8])

    await announcer.stop()
    // no longer served directly (the direct request fails), and the DHT says withdrawn
    const after = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS })
    expect(after.map(s => s.start)).to.deep.equal([8])
    // ...and the DHT holds the tombstone, not the live record
    const stored = await rawGet(reader, nodeRecordKey(modelId, a.libp2p.peerId))
    expect(stored).to.not.equal(undefined)
    const tomb = await verifyNodeRecord(stored ?? new Uint8Array(0))
    expect(tomb.record.expiresAt).to.be.at.most(Date.now())
  })

  it('a node that stops refreshing disappears once its record expires; a live one is refreshed', async () => {
    const [a, b, reader] = await startPeers(3)
    const ttlMs = 3000
    // a crashes: its announcer does not withdraw and its node goes away
    const crashing = await announce(a, 0, 8, { ttlMs, withdrawOnStop: false })
    await announce(b, 8, 16, { ttlMs })
    const firstExpiry = crashing.lastResult?.expiresAt ?? 0
    await crashing.stop()
    await a.libp2p.stop()

    // until the TTL runs out the DHT still has a's record; it is not reachable
    const stale = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS })
    const staleA = spanOf(stale, a)
    if (staleA != null) {
      expect(staleA.source).to.equal('dht')
      expect(staleA.rttMs).to.equal(undefined)
    } else {
      // only when the discovery itself outlived the TTL on a slow machine
      expect(Date.now()).to.be.at.least(firstExpiry)
    }

    let gone: LiveSpan[] = []
    await waitFor('a\'s span to expire', async () => {
      gone = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS, direct: false })
      return spanOf(gone, a) == null
    }, 20_000)
    expect(Date.now()).to.be.at.least(firstExpiry)
    // b kept refreshing (at TTL/3): its DHT record outlived the first expiry
    const bSpan = spanOf(gone, b)
    expect(bSpan?.source).to.equal('dht')
    await waitFor('b\'s refreshed record past the first TTL', async () => {
      const spans = await discoverSpans(reader.libp2p, { modelId, layers: LAYERS, direct: false })
      const s = spanOf(spans, b)
      return s != null && Date.now() > firstExpiry + 500
    }, 20_000)
  })

  it('the swarm view refreshes itself and drops spans as they expire', async () => {
    const [a, b, reader] = await startPeers(3)
    await announce(a, 0, 8)
    const view = createSwarmView({ libp2p: reader.libp2p, logger: silentLogger() }, { modelId, layers: LAYERS, refreshIntervalMs: 200 })
    views.push(view)
    await view.start()
    expect(view.spans().map(s => s.start)).to.deep.equal([0])
    await announce(b, 8, 16)
    await waitFor('the view to pick up b', () => view.spans().length === 2)
    // spans() filters by expiry without a refresh
    const latest = Math.max(...view.spans().map(s => s.expiresAt))
    expect(view.spans(latest)).to.deep.equal([])
    await view.stop()
    await expect(view.refresh()).to.eventually.be.rejected.with.property('code', 'ERR_RECORD_NOT_STARTED')
  })

  it('an announcer alone retries until a peer stores its record, and stops on its signal', async () => {
    const lonely = await startPeer()
    peers.push(lonely)
    const controller = new AbortController()
    const announcer = await announce(lonely, 0, 4, { retryMs: 50, signal: controller.signal })
    expect(announcer.lastResult?.putPeers).to.equal(0)
    expect(announcer.lastResult?.unprovidedLayers).to.equal(4)
    // alone, discovery returns at once: only its own span, from the announcer's live record
    const alone = await discoverSpans(lonely.libp2p, { modelId, layers: LAYERS, localRecord: async () => announcer.record() })
    expect(alone.map(s => [s.source, s.start, s.end])).to.deep.equal([['self', 0, 4]])

    const other = await startPeer()
    peers.push(other)
    await mesh([lonely, other])
    await waitFor('a retry to reach the new peer', () => (announcer.lastResult?.putPeers ?? 0) > 0 && announcer.lastResult?.unprovidedLayers === 0)
    const spans = await discoverSpans(other.libp2p, { modelId, layers: LAYERS })
    expect(spans.map(s => [s.start, s.end])).to.deep.equal([[0, 4]])

    controller.abort()
    await waitFor('the announcer to stop', () => !announcer.isStarted)
    await expect(announcer.announce()).to.eventually.be.rejected.with.property('code', 'ERR_RECORD_NOT_STARTED')
    await waitFor('the withdrawal to reach the peer', async () => (await discoverSpans(other.libp2p, { modelId, layers: LAYERS })).length === 0)
  })

  it('an announcer alone a long while retries at most retryMaxMs apart, so a peer that joins late sees it soon', async () => {
    const lonely = await startPeer()
    peers.push(lonely)
    // unbounded doubling from 50 ms would wait 3.2 s, then 6.4 s, by the time the peer joins
    const announcer = await announce(lonely, 0, 4, { retryMs: 50, retryMaxMs: 200 })
    await new Promise(resolve => setTimeout(resolve, 3500))
    expect(announcer.lastResult?.putPeers).to.equal(0)
    const other = await startPeer()
    peers.push(other)
    await mesh([lonely, other])
    // 2 s: ten times the cap
    await waitFor('a retry to reach the late peer', () => (announcer.lastResult?.putPeers ?? 0) > 0 && announcer.lastResult?.unprovidedLayers === 0, 2000)
    const spans = await discoverSpans(other.libp2p, { modelId, layers: LAYERS })
    expect(spans.map(s => [s.start, s.end])).to.deep.equal([[0, 4]])
  })

  it('the DHT and record protocols are what nodes speak', async () => {
    const [a, b] = await startPeers(2)
    await announce(a, 0, 2)
    await waitFor('identify of a', async () => {
      const peer = await b.libp2p.peerStore.get(a.libp2p.peerId)
      return peer.protocols.includes(DHT_PROTOCOL) && peer.protocols.includes(RECORD_PROTOCOL)
    })
  })
})
