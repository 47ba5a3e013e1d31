import { expect } from 'aegir/chai'
import { LAYER_FIELD_MODEL, LAYER_FIELD_UNIT } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { BLOCK_SYNC_PROTOCOL } from '../../src/net/constants.ts'
import { serveSyncStream } from '../../src/net/sync-server.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { bytesOf, collect, connect, startNode, stopAll, waitFor } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { StoredBlock } from '../../src/chain/types.ts'

const CHUNK = 4096

/** A small model-shaped DAG on n: a manifest on A, layers on B (with payloads), notes on A. */
async function buildChain (n: TestNode): Promise<{ blocks: StoredBlock[], payloads: Map<string, Uint8Array> }> {
  const blocks: StoredBlock[] = []
  const payloads = new Map<string, Uint8Array>()
  const add = async (block: StoredBlock, payload?: Uint8Array): Promise<void> => {
    blocks.push(block)
    if (payload != null) {
      payloads.set(Buffer.from(block.id).toString('hex'), payload)
    }
  }
  const manifestPayload = bytesOf(2 * CHUNK + 100, 1)
  const manifest = await n.store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, payload: manifestPayload, chunkSize: CHUNK }, n.signer)
  await add(manifest, manifestPayload)
  let previous: StoredBlock | undefined
  for (let unit = 0; unit < 3; unit++) {
    const payload = bytesOf(6 * CHUNK + unit, 10 + unit)
    const layer: StoredBlock = await n.store.createBlock({
      chain: ChainId.B,
      type: BlockType.Layer,
      parents: previous == null ? [manifest.id] : [manifest.id, previous.id],
      fields: { [LAYER_FIELD_MODEL]: { kind: 'bytes', value: manifest.id }, [LAYER_FIELD_UNIT]: { kind: 'uint', value: BigInt(unit) } },
      payload,
      chunkSize: CHUNK
    }, n.signer)
    await add(layer, payload)
    previous = layer
  }
  let note = manifest
  for (let i = 0; i < 4; i++) {
    note = await n.store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [note.id], fields: { i: { kind: 'uint', value: BigInt(i) } } }, n.signer)
    await add(note)
  }
  return { blocks, payloads }
}

async function waitForWholeChain (n: TestNode, chain: { blocks: StoredBlock[] }): Promise<void> {
  await waitFor('the late joiner to hold every block and payload', async () => {
    const blocks = await Promise.all(chain.blocks.map(async b => n.store.get(b.id)))
    return blocks.every(b => b != null && (b.header.payloadSize === 0n || b.payloadComplete))
  })
}

async function expectSameChain (from: TestNode, to: TestNode, chain: { blocks: StoredBlock[], payloads: Map<string, Uint8Array> }): Promise<void> {
  for (const block of chain.blocks) {
    expect(await to.store.getEncoded(block.id)).to.deep.equal(await from.store.getEncoded(block.id))
    const payload = chain.payloads.get(Buffer.from(block.id).toString('hex'))
    if (payload != null) {
      expect(await collect(to.store.readPayload(block.id))).to.deep.equal(payload)
    }
  }
  expect(await to.store.counts()).to.deep.equal(await from.store.counts())
  const report = await to.store.verify()
  expect(report.issues).to.deep.equal([])
}

/**
 * Serve block sync on `n` with its real server, except that the first
 * `refuse` streams (null: every stream) are reset at once, as a peer under
 * load or a connection torn down mid-request would leave them.
 */
async function serveAfterResets (n: TestNode, refuse: number | null): Promise<{ streams: number }> {
  const seen = { streams: 0 }
  await n.net.libp2p.unhandle(BLOCK_SYNC_PROTOCOL)
  await n.net.libp2p.handle(BLOCK_SYNC_PROTOCOL, (stream) => {
    seen.streams++
    if (refuse == null || seen.streams <= refuse) {
      stream.abort(new Error('reset by the test peer'))
      return
    }
    serveSyncStream(stream, { store: n.store, maxMessageBytes: 64 * 1024, idleTimeoutMs: 10_000, maxInflight: 8, log: silentLogger().forComponent('test') })
  })
  return seen
}

describe('net: a late joiner catches up over the network', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []

  afterEach(async () => {
    await stopAll(nodes)
  })

  it('fetches headers and payloads from a peer as soon as it connects', async () => {
    const n1 = await startNode()
    nodes.push(n1)
    const chain = await buildChain(n1)
    const late = await startNode()
    nodes.push(late)
    await connect(late, n1)
    await waitForWholeChain(late, chain)
    await expectSameChain(n1, late, chain)
    expect(late.net.gossip.stats.accepted).to.equal(0)
    expect(late.net.sync.stats.blocksAdded).to.equal(chain.blocks.length)
  })

  it('fetches payload chunks from several peers at once, keeping what was stored', async () => {
    const n1 = await startNode()
    const n2 = await startNode()
    nodes.push(n1, n2)
    const chain = await buildChain(n1)
    // n2 copies the chain over the network first, so two peers hold every payload
    await connect(n2, n1)
    await waitFor('n2 to copy the chain', async () => (await n2.store.counts()).total === chain.blocks.length &&
      (await Promise.all(chain.blocks.map(async b => n2.store.get(b.id)))).every(b => b?.header.payloadSize === 0n || b?.payloadComplete === true))

    const late = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(late)
    // a head start: some chunks of one layer are already on disk and must stay
    const layer = chain.blocks.find(b => b.header.type === BlockType.Layer) as StoredBlock
    const layerPayload = chain.payloads.get(Buffer.from(layer.id).toString('hex')) as Uint8Array
    for (const b of chain.blocks.slice(0, chain.blocks.indexOf(layer) + 1)) {
      await late.store.addBlock(await n1.store.getEncoded(b.id) as Uint8Array)
    }
    await late.store.putChunk(layer.id, 0, layerPayload.subarray(0, CHUNK))
    await late.store.putChunk(layer.id, 1, layerPayload.subarray(CHUNK, 2 * CHUNK))

    await connect(late, n1)
    await connect(late, n2)
    await waitFor('both peers identified', async () => (await late.net.sync.syncPeers()).length === 2)
    const result = await late.net.sync.syncWith(n1.net.libp2p.peerId)
    expect(result.payloadErrors).to.equal(0)
    await expectSameChain(n1, late, chain)

    const servedBy = (n: TestNode): number => n.net.sync.stats.served['get-chunk'] ?? 0
    expect(servedBy(n1)).to.be.greaterThan(0)
    expect(servedBy(n2)).to.be.greaterThan(0)
    const totalChunks = chain.blocks.reduce((n, b) => n + b.header.chunkHashes.length, 0)
    // the two chunks already on disk were not fetched again
    expect(late.net.sync.stats.chunksFetched).to.equal(totalChunks - 2)
  })

  it('tries a failed catch-up again after a backoff, until it succeeds, with nothing gossiped', async () => {
    const n1 = await startNode()
    nodes.push(n1)
    const chain = await buildChain(n1)
    const seen = await serveAfterResets(n1, 2)
    const late = await startNode({ blockSync: { syncRetryBaseMs: 100, syncRetryMaxMs: 1000 } })
    nodes.push(late)
    await connect(late, n1)
    await waitForWholeChain(late, chain)
    await expectSameChain(n1, late, chain)
    const stats = late.net.sync.stats
    // identify started the first catch-up; the two reset streams failed it and its first retry
    expect(stats.syncErrors).to.equal(2)
    expect(stats.syncRetries).to.equal(2)
    expect(stats.syncs).to.equal(3)
    expect(seen.streams).to.be.greaterThan(2)
    expect(late.net.gossip.stats.accepted).to.equal(0)
  })

  it('gives up on a peer whose catch-ups keep failing after maxSyncRetries tries in a row', async () => {
    const n1 = await startNode()
    nodes.push(n1)
    await buildChain(n1)
    const seen = await serveAfterResets(n1, null)
    const late = await startNode({ blockSync: { syncRetryBaseMs: 50, syncRetryMaxMs: 100, maxSyncRetries: 3 } })
    nodes.push(late)
    await connect(late, n1)
    await waitFor('the first catch-up and three retries to fail', () => late.net.sync.stats.syncErrors === 4)
    // the backoff would have fired several more times by now (50, 100, 100, 100 ms ...)
    await new Promise(resolve => setTimeout(resolve, 1000))
    const stats = late.net.sync.stats
    expect(stats.syncRetries).to.equal(3)
    expect(stats.syncs).to.equal(4)
    expect(stats.syncErrors).to.equal(4)
    expect(seen.streams).to.equal(4)
    expect(await late.store.counts()).to.deep.include({ total: 0 })
  })
})
