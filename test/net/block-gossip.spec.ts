import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { CHAIN_TOPICS } from '../../src/net/index.ts'
import { bytesOf, collect, connect, startNode, stopAll, waitFor, waitForSubscribers } from './helpers.ts'
import type { TestNode } from './helpers.ts'

describe('net: block gossip among three nodes', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []
  let n1: TestNode
  let n2: TestNode
  let n3: TestNode

  before(async () => {
    n1 = await startNode()
    n2 = await startNode()
    n3 = await startNode()
    nodes.push(n1, n2, n3)
    await connect(n1, n2)
    await connect(n2, n3)
    await connect(n1, n3)
    await waitForSubscribers(n1, CHAIN_TOPICS.A, [n2, n3])
    await waitForSubscribers(n2, CHAIN_TOPICS.A, [n1, n3])
  })

  after(async () => {
    await stopAll(nodes)
  })

  it('delivers a new block to every node, validated and stored', async () => {
    const block = await n1.store.createBlock({ chain: ChainId.A, type: BlockType.Note, fields: { text: { kind: 'string', value: 'hello' } } }, n1.signer)
    await n1.net.publish(block.id)
    await waitFor('n2 and n3 to store the block', async () => (await n2.store.has(block.id)) && (await n3.store.has(block.id)))
    expect(n2.net.gossip.stats.accepted).to.be.at.least(1)
    expect(n3.net.gossip.stats.accepted).to.be.at.least(1)
    expect(n2.net.gossip.stats.rejected).to.equal(0)
    expect(await n3.store.getEncoded(block.id)).to.deep.equal(await n1.store.getEncoded(block.id))
  })

  it('gossips headers only and fetches the payload over the block exchange', async () => {
    const payload = bytesOf(5 * 4096 + 17, 7)
    const block = await n1.store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload, chunkSize: 4096 }, n1.signer)
    await n1.net.publish(block.id)
    for (const n of [n2, n3]) {
      await waitFor('payload complete', async () => (await n.store.get(block.id))?.payloadComplete === true)
      expect(await collect(n.store.readPayload(block.id))).to.deep.equal(payload)
    }
  })

  it('fetches the missing parents of a gossiped orphan from its sender', async () => {
    const parent = await n1.store.createBlock({ chain: ChainId.A, type: BlockType.Note }, n1.signer)
    const child = await n1.store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [parent.id] }, n1.signer)
    const orphanedBefore = n2.net.gossip.stats.orphaned
    // only the child is announced: receivers must walk back to the parent
    await n1.net.publish(child.id)
    await waitFor('n2 to store parent and child', async () => (await n2.store.has(parent.id)) && (await n2.store.has(child.id)))
    expect(n2.net.gossip.stats.orphaned).to.be.greaterThan(orphanedBefore)
  })
})
