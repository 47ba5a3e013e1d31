import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { createChainStore } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { CHAIN_TOPICS, SyncOffence } from '../../src/net/index.ts'
import { connect, startNode, stopAll, waitFor, waitForSubscribers } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { StoredBlock } from '../../src/chain/types.ts'
import type { ConnectionGater, PeerId } from '@libp2p/interface'

/** a linear chain of `n` notes on `store` (the first has no parent), signed by `node` */
async function notes (store: ChainStore, node: TestNode, n: number, tag: number, parent?: StoredBlock): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  let previous = parent
  for (let i = 0; i < n; i++) {
    previous = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: previous == null ? [] : [previous.id], fields: { tag: { kind: 'uint', value: BigInt(tag) }, i: { kind: 'uint', value: BigInt(i) } } }, node.signer)
    out.push(previous)
  }
  return out
}

function denyPeer (banned: () => PeerId | undefined): ConnectionGater {
  const denied = (peerId: PeerId): boolean => banned()?.equals(peerId) === true
  return { denyDialPeer: denied, denyInboundEncryptedConnection: denied, denyOutboundEncryptedConnection: denied }
}

describe('net: orphans\' missing parents are fetched from peers', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  const dirs: string[] = []

  afterEach(async () => {
    await stopAll(nodes)
    await Promise.all(dirs.splice(0).map(async d => rm(d, { recursive: true, force: true })))
  })

  it('a header added directly whose ancestors only a peer holds: the node fetches them and stores all', async () => {
    const holder = await startNode({ blockSync: { syncOnConnect: false } })
    const node = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(holder, node)
    const chain = await notes(holder.store, holder, 4, 1)
    const child = chain[chain.length - 1]
    await connect(node, holder)
    await waitFor('the holder identified', async () => (await node.net.sync.syncPeers()).length === 1)

    expect(await node.store.addBlock(await holder.store.getEncoded(child.id) as Uint8Array)).to.equal('orphaned')
    await waitFor('the node to store the whole chain', async () => (await Promise.all(chain.map(async b => node.store.has(b.id)))).every(Boolean))
    const stats = node.net.sync.stats
    expect(stats.orphanParentsFetched).to.equal(1)
    expect(stats.orphanRequests).to.equal(1)
    expect(stats.orphanParentsAbandoned).to.equal(0)
    expect(node.store.missingParents()).to.deep.equal([])
    expect((await node.store.counts()).orphans).to.equal(0)
    // an honest holder asked for something it did not announce is not penalised
    expect(node.net.penalties.peers()).to.deep.equal([])
    expect((await node.store.verify()).issues).to.deep.equal([])
  })

  it('a child gossiped before its parent by a peer that lacks the parent: the parent comes from another peer, the sender pays', async () => {
    const holder = await startNode({ blockSync: { syncOnConnect: false } })
    const node = await startNode({ blockSync: { syncOnConnect: false } })
    // the sender talks to the node only, so the parent can come from the holder alone
    const sender = await startNode({ blockSync: { syncOnConnect: false }, connectionGater: denyPeer(() => holder.net.libp2p.peerId) })
    const senderId = sender.net.libp2p.peerId
    nodes.push(holder, node, sender)
    const [parent, child] = await notes(holder.store, holder, 2, 2)
    await connect(node, holder)
    await connect(sender, node)
    await waitForSubscribers(sender, CHAIN_TOPICS.A, [node])
    await waitFor('both peers identified', async () => (await node.net.sync.syncPeers()).length === 2)

    // straight onto the topic: the sender's store has neither block
    await sender.net.libp2p.services.pubsub.publish(CHAIN_TOPICS.A, await holder.store.getEncoded(child.id) as Uint8Array)
    await waitFor('the node to store parent and child', async () => (await node.store.has(parent.id)) && (await node.store.has(child.id)))
    expect(node.net.gossip.stats.orphaned).to.equal(1)
    expect(node.net.sync.stats.orphanParentsFetched).to.equal(1)
    // the sender announced a block it then could not produce
    await waitFor('the sender to be penalised', () => node.net.sync.stats.offences[SyncOffence.MissingAncestry] === 1)
    expect(node.net.penalties.score(senderId)).to.be.below(0)
    expect(node.net.penalties.score(holder.net.libp2p.peerId)).to.equal(0)
    expect(await sender.store.has(parent.id)).to.equal(false)
  })

  it('stays within bounds: a parent nobody has and an ancestry deeper than the bound are abandoned after the try bound', async () => {
    const maxAttempts = 3
    const holder = await startNode({ blockSync: { syncOnConnect: false } })
    const node = await startNode({ blockSync: { syncOnConnect: false, orphans: { maxAttempts, maxDepth: 4, graceMs: 0, retryBaseMs: 20, retryMaxMs: 80 } } })
    nodes.push(holder, node)
    // a parent that exists nowhere but in a scratch store
    const scratchDir = await mkdtemp(join(tmpdir(), 'bly-orphan-scratch-'))
    dirs.push(scratchDir)
    const scratch = createChainStore({ path: scratchDir, fsync: false })
    await scratch.start()
    const [, lostChild] = await notes(scratch, holder, 2, 3)
    const lostEncoded = await scratch.getEncoded(lostChild.id) as Uint8Array
    await scratch.stop()
    // and a chain on the holder deeper than maxDepth behind its last block
    const deep = await notes(holder.store, holder, 8, 4)
    await connect(node, holder)
    await waitFor('the holder identified', async () => (await node.net.sync.syncPeers()).length === 1)

    await node.store.addBlock(lostEncoded)
    await node.store.addBlock(await holder.store.getEncoded(deep[deep.length - 1].id) as Uint8Array)
    await waitFor('both missing parents abandoned', () => node.net.sync.stats.orphanParentsAbandoned === 2)
    expect(node.net.sync.stats.orphanRequests).to.equal(2 * maxAttempts)
    expect(node.net.sync.stats.orphanParentsFetched).to.equal(0)
    // the walks stopped at the depth bound: nothing of the deep chain was stored
    expect((await node.store.counts()).A).to.equal(0)

    // a later orphan whose parent the holder has is still fetched, and the abandoned ones are not asked again
    const [near] = await notes(holder.store, holder, 1, 5)
    const nearChild = (await notes(holder.store, holder, 1, 6, near))[0]
    await node.store.addBlock(await holder.store.getEncoded(nearChild.id) as Uint8Array)
    await waitFor('the near parent fetched', async () => node.store.has(nearChild.id))
    expect(node.net.sync.stats.orphanRequests).to.equal(2 * maxAttempts + 1)
    expect(node.net.sync.stats.orphanParentsFetched).to.equal(1)
    expect(node.net.sync.stats.orphanParentsAbandoned).to.equal(2)
    // the holder lied about nothing
    expect(node.net.penalties.peers()).to.deep.equal([])
  })
})
