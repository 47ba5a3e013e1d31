import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ChainErrorCode } from '../../src/chain/errors.ts'
import { createChainStore } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { WRONG_TOPIC } from '../../src/net/block-gossip.ts'
import { CHAIN_TOPICS } from '../../src/net/index.ts'
import { connect, startNode, stopAll, waitFor, waitForSubscribers } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { ConnectionGater, PeerId } from '@libp2p/interface'

/** n3 never talks to `banned`, so anything from it must come through n2 */
function denyPeer (banned: () => PeerId | undefined): ConnectionGater {
  const denied = (peerId: PeerId): boolean => banned()?.equals(peerId) === true
  return {
    denyDialPeer: denied,
    denyInboundEncryptedConnection: denied,
    denyOutboundEncryptedConnection: denied
  }
}

describe('net: a peer that publishes an invalid block', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []
  let bad: TestNode
  let n2: TestNode
  let n3: TestNode
  let scratchDir: string

  before(async () => {
    bad = await startNode()
    n2 = await startNode()
    n3 = await startNode({ connectionGater: denyPeer(() => bad.net.libp2p.peerId) })
    nodes.push(bad, n2, n3)
    scratchDir = await mkdtemp(join(tmpdir(), 'bly-net-scratch-'))
    await connect(bad, n2)
    await connect(n3, n2)
    await waitForSubscribers(bad, CHAIN_TOPICS.A, [n2])
    await waitForSubscribers(n2, CHAIN_TOPICS.A, [bad, n3])
  })

  after(async () => {
    await stopAll(nodes)
    await rm(scratchDir, { recursive: true, force: true })
  })

  it('is rejected by the first receiver, goes no further, and loses score', async () => {
    // a real block signed by the bad node, built in a store the network never sees
    const scratch = createChainStore({ path: scratchDir, fsync: false })
    await scratch.start()
    const block = await scratch.createBlock({ chain: ChainId.A, type: BlockType.Note, fields: { text: { kind: 'string', value: 'forged' } } }, bad.signer)
    const encoded = await scratch.getEncoded(block.id) as Uint8Array
    await scratch.stop()
    const forged = encoded.slice()
    forged[forged.length - 1] ^= 0x01 // the signature is the envelope's last field

    const pubsub = bad.net.libp2p.services.pubsub
    // straight onto the topic: the bad node's own validation is bypassed
    await pubsub.publish(CHAIN_TOPICS.A, forged)

    await waitFor('n2 to reject the forged block', () => n2.net.gossip.stats.rejected === 1)
    expect(n2.net.gossip.stats.rejectedByCode).to.deep.equal({ [ChainErrorCode.BLOCK_SIGNATURE]: 1 })
    await waitFor('the sender\'s score at n2 to drop below 0', () => (n2.net.gossip.peerScore(bad.net.libp2p.peerId) ?? 0) < 0)
    expect(await n2.store.has(block.id)).to.equal(false)

    // a valid block from n2 reaches n3 over the same path the forged one would have taken
    const good = await n2.store.createBlock({ chain: ChainId.A, type: BlockType.Note }, n2.signer)
    await n2.net.publish(good.id)
    await waitFor('n3 to store the valid block', async () => n3.store.has(good.id))
    expect(n3.net.libp2p.getConnections(bad.net.libp2p.peerId)).to.have.length(0)
    expect(n3.net.gossip.stats.accepted).to.equal(1)
    expect(n3.net.gossip.stats.rejected).to.equal(0)
    expect(n3.net.gossip.stats.ignored).to.equal(0)
    expect(await n3.store.has(block.id)).to.equal(false)
  })
})

describe('net: a peer whose gossip score falls to the graylist', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []
  let scratchDir: string

  after(async () => {
    await stopAll(nodes)
    await rm(scratchDir, { recursive: true, force: true })
  })

  it('is banned after two invalid blocks: hung up, refused on redial, counted', async () => {
    const bad = await startNode()
    const n2 = await startNode()
    nodes.push(bad, n2)
    scratchDir = await mkdtemp(join(tmpdir(), 'bly-net-scratch-'))
    await connect(bad, n2)
    await waitForSubscribers(bad, CHAIN_TOPICS.A, [n2])
    const scratch = createChainStore({ path: scratchDir, fsync: false })
    await scratch.start()
    const forged: Uint8Array[] = []
    for (let i = 0; i < 2; i++) {
      const block = await scratch.createBlock({ chain: ChainId.A, type: BlockType.Note, fields: { i: { kind: 'uint', value: BigInt(i) } } }, bad.signer)
      const encoded = (await scratch.getEncoded(block.id) as Uint8Array).slice()
      encoded[encoded.length - 1] ^= 0x01
      forged.push(encoded)
    }
    await scratch.stop()

    const badId = bad.net.libp2p.peerId
    for (const message of forged) {
      await bad.net.libp2p.services.pubsub.publish(CHAIN_TOPICS.A, message)
    }
    await waitFor('n2 to reject both', () => n2.net.gossip.stats.rejected === 2)
    // P4 = -10 x 2² = -40, at or below the graylist (-35): banned at the next heartbeat
    await waitFor('n2 to ban the sender', () => n2.net.penalties.isBanned(badId))
    expect(n2.net.sync.stats.bans).to.deep.equal({ 'sync-score': 0, 'gossip-score': 1 })
    await waitFor('n2 to hang up on the sender', () => n2.net.libp2p.getConnections(badId).length === 0 && bad.net.libp2p.getConnections(n2.net.libp2p.peerId).length === 0)
    await bad.net.libp2p.dial(n2.net.libp2p.getMultiaddrs()[0]).catch(() => {})
    await waitFor('the redial to be refused', () => n2.net.sync.stats.refused >= 1 && n2.net.libp2p.getConnections(badId).length === 0)
  })
})

describe('net: a block published on the other chain\'s topic', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []

  after(async () => {
    await stopAll(nodes)
  })

  it('is rejected with ERR_WRONG_TOPIC before the store takes it', async () => {
    const a = await startNode()
    const b = await startNode()
    nodes.push(a, b)
    await connect(a, b)
    await waitForSubscribers(a, CHAIN_TOPICS.B, [b])
    // a valid, signed chain A block, straight onto chain B's topic
    const block = await a.store.createBlock({ chain: ChainId.A, type: BlockType.Note, fields: { text: { kind: 'string', value: 'lost' } } }, a.signer)
    await a.net.libp2p.services.pubsub.publish(CHAIN_TOPICS.B, await a.store.getEncoded(block.id) as Uint8Array)
    await waitFor('b to reject it', () => b.net.gossip.stats.rejected === 1)
    expect(b.net.gossip.stats.rejectedByCode).to.deep.equal({ [WRONG_TOPIC]: 1 })
    expect(b.net.gossip.stats.accepted).to.equal(0)
    expect(await b.store.has(block.id)).to.equal(false)
    // no chain rule failed: the store decoded it and was never asked to take it
    expect(b.store.metrics()).to.include({ added: 0 })
    expect(b.store.metrics().rejected).to.deep.equal({})
  })
})
