/**
 * Issue 16, item 1, over real libp2p nodes on 127.0.0.1: a Note whose parent
 * is a known manifest, declaring 2048 bytes in chunks of 1024, whose chunk
 * hashes name another block's chunks (1024 and 452 bytes). It must never be
 * marked payload-complete, and `verify()` must stay clean on every node,
 * whether the header arrives by gossip or by sync.
 */
import { expect } from 'aegir/chai'
import { ChainErrorCode } from '../../src/chain/errors.ts'
import { createSignerFromSeed } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { CHAIN_TOPICS } from '../../src/net/index.ts'
import { chunkHashes, expectCode, header, signHeader } from '../chain/helpers.ts'
import { bytesOf, collect, connect, startNode, stopAll, waitFor, waitForSubscribers } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { StoredBlock } from '../../src/chain/types.ts'

const CHUNK = 1024
/** the honest payload: chunk 0 of 1024 bytes, a last chunk of 452 */
const PAYLOAD = bytesOf(CHUNK + 452, 3)
/** any key will do: the attacker's header is validly signed */
const attacker = createSignerFromSeed(new Uint8Array(32).fill(0x66))

interface Honest {
  manifest: StoredBlock
  block: StoredBlock
}

/** a manifest and a Note carrying PAYLOAD, created on `n` */
async function honestBlocks (n: TestNode): Promise<Honest> {
  const manifest = await n.store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, payload: bytesOf(2500, 4), chunkSize: CHUNK }, n.signer)
  const block = await n.store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [manifest.id], payload: PAYLOAD, chunkSize: CHUNK }, n.signer)
  return { manifest, block }
}

/** the poisoning header: 2048 bytes declared, the honest block's two chunk hashes */
async function poisonHeader (manifest: StoredBlock): Promise<{ id: Uint8Array, encoded: Uint8Array }> {
  return signHeader(header({
    author: attacker.publicKey,
    parents: [manifest.id],
    payloadSize: 2048n,
    chunkSize: CHUNK,
    chunkHashes: chunkHashes(PAYLOAD, CHUNK)
  }), attacker)
}

/** copy `blocks` (headers and payloads) from one node's store to another's, off the network */
async function copyBlocks (from: TestNode, to: TestNode, blocks: StoredBlock[]): Promise<void> {
  for (const b of blocks) {
    await to.store.addBlock(await from.store.getEncoded(b.id) as Uint8Array, await collect(from.store.readPayload(b.id)))
  }
}

async function expectClean (n: TestNode): Promise<Awaited<ReturnType<TestNode['store']['verify']>>> {
  const report = await n.store.verify()
  expect(report.issues).to.deep.equal([])
  expect(report.ok).to.equal(true)
  return report
}

describe('net: a header naming another block\'s chunks at other lengths', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []

  afterEach(async () => {
    await stopAll(nodes)
  })

  it('by gossip: refused with ERR_CHUNK_LENGTH and not forwarded, without penalising the sender (a relayer lacking the chunks could not know), verify stays clean', async () => {
    const bad = await startNode()
    const victim = await startNode()
    nodes.push(bad, victim)
    const honest = await honestBlocks(bad)
    await connect(victim, bad)
    await waitFor('the victim to hold the honest payload', async () => (await victim.store.get(honest.block.id))?.payloadComplete === true)
    await waitForSubscribers(bad, CHAIN_TOPICS.A, [victim])

    const poison = await poisonHeader(honest.manifest)
    // straight onto the topic: the sender's own store never saw it
    await bad.net.libp2p.services.pubsub.publish(CHAIN_TOPICS.A, poison.encoded)

    await waitFor('the victim to refuse the poisoning header', () => victim.net.gossip.stats.rejectedByCode[ChainErrorCode.CHUNK_LENGTH] === 1)
    expect(victim.net.gossip.stats.rejected).to.equal(0)
    expect(victim.net.gossip.stats.ignored).to.be.at.least(1)
    expect(victim.store.metrics().rejected).to.deep.equal({ [ChainErrorCode.CHUNK_LENGTH]: 1 })
    expect(await victim.store.has(poison.id)).to.equal(false)
    expect(victim.net.gossip.peerScore(bad.net.libp2p.peerId) ?? 0).to.be.at.least(0)
    expect(await collect(victim.store.readPayload(honest.block.id))).to.deep.equal(PAYLOAD)
    await expectClean(victim)
  })

  it('by sync to a node holding the chunks: rejected with ERR_CHUNK_LENGTH, verify stays clean', async () => {
    const origin = await startNode({ blockSync: { syncOnConnect: false } })
    const sender = await startNode({ blockSync: { syncOnConnect: false } })
    const victim = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(origin, sender, victim)
    const honest = await honestBlocks(origin)
    const poison = await poisonHeader(honest.manifest)
    await copyBlocks(origin, victim, [honest.manifest, honest.block])
    // the sender got the header before the honest chunks, so it holds it (never complete)
    await copyBlocks(origin, sender, [honest.manifest])
    expect(await sender.store.addBlock(poison.encoded)).to.equal('added')
    await copyBlocks(origin, sender, [honest.block])
    expect((await sender.store.get(poison.id))?.payloadComplete).to.equal(false)

    await connect(victim, sender)
    await waitFor('the sender to be a sync peer', async () => (await victim.net.sync.syncPeers()).length === 1)
    const result = await victim.net.sync.syncWith(sender.net.libp2p.peerId)
    expect(result.rejected).to.deep.equal({ [ChainErrorCode.CHUNK_LENGTH]: 1 })
    expect(victim.store.metrics().rejected).to.deep.equal({ [ChainErrorCode.CHUNK_LENGTH]: 1 })
    expect(await victim.store.has(poison.id)).to.equal(false)
    await expectClean(victim)
    // the sender holds the header it got before the chunks: never complete, not an issue
    const senderReport = await expectClean(sender)
    expect(senderReport.unsatisfiableBlocks).to.equal(1)
  })

  it('by sync to a late joiner: the header is stored but never complete, its chunk is never served, verify stays clean', async () => {
    const sender = await startNode({ blockSync: { syncOnConnect: false } })
    const late = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(sender, late)
    const honestNode = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(honestNode)
    const honest = await honestBlocks(honestNode)
    const poison = await poisonHeader(honest.manifest)
    await copyBlocks(honestNode, sender, [honest.manifest])
    expect(await sender.store.addBlock(poison.encoded)).to.equal('added')
    await copyBlocks(honestNode, sender, [honest.block])

    await connect(late, sender)
    await waitFor('the sender to be a sync peer', async () => (await late.net.sync.syncPeers()).length === 1)
    await late.net.sync.syncWith(sender.net.libp2p.peerId)
    // a second round: whatever order the payloads came in, nothing more completes the poison
    const second = await late.net.sync.syncWith(sender.net.libp2p.peerId)
    // the poison is known to be unsatisfiable now (the honest chunks are held): counted as such, not as a payload error to retry
    expect(second.unsatisfiable).to.equal(1)
    expect(second.payloadErrors).to.equal(0)
    expect((await late.store.get(honest.block.id))?.payloadComplete).to.equal(true)
    expect(await collect(late.store.readPayload(honest.block.id))).to.deep.equal(PAYLOAD)
    const stored = await late.store.get(poison.id)
    expect(stored?.payloadComplete).to.equal(false)
    await expectClean(late)
    await expectClean(sender)
    // the sender never serves the honest 452-byte chunk as the poison's 1024-byte chunk 1
    await expectCode(sender.store.getChunk(poison.id, 1), ChainErrorCode.CHUNK_LENGTH)
    expect(late.store.metrics().rejected).to.not.have.property(ChainErrorCode.PAYLOAD_SIZE)
  })
})
