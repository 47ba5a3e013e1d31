import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { NetErrorCode, SyncOffence } from '../../src/net/index.ts'
import { bytesOf, collect, connect, startNode, stopAll, waitFor } from './helpers.ts'
import { hexOf, lieOverSync } from './lying-peer.ts'
import type { TestNode } from './helpers.ts'
import type { Served } from './lying-peer.ts'
import type { StoredBlock } from '../../src/chain/types.ts'
import type { PeerId } from '@libp2p/interface'

const CHUNK = 4096

function connected (a: TestNode, b: TestNode): boolean {
  return a.net.libp2p.getConnections(b.net.libp2p.peerId).length > 0
}

function offencesOnly (counts: Partial<Record<SyncOffence, number>>): Record<SyncOffence, number> {
  return { 'chunk-corrupt': 0, 'chunk-length': 0, 'chunk-substituted': 0, 'invalid-header': 0, 'missing-ancestry': 0, ...counts }
}

describe('net: a peer that serves chunks whose bytes are not the chunk', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  let honest: TestNode
  let liar: TestNode
  let victim: TestNode
  let served: Served
  const blocks: StoredBlock[] = []
  const payloads = new Map<string, Uint8Array>()

  before(async () => {
    // nobody catches up on its own: every fetch below is the test's
    honest = await startNode({ blockSync: { syncOnConnect: false } })
    liar = await startNode({ blockSync: { syncOnConnect: false } })
    victim = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(honest, liar, victim)
    // b1, b2 on the honest node and the liar; b3 on the liar only (two full chunks each)
    for (let i = 0; i < 3; i++) {
      const payload = bytesOf(2 * CHUNK, 40 + i)
      const author = i < 2 ? honest : liar
      const block = await author.store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload, chunkSize: CHUNK, fields: { i: { kind: 'uint', value: BigInt(i) } } }, author.signer)
      const encoded = await author.store.getEncoded(block.id) as Uint8Array
      if (i < 2) {
        await liar.store.addBlock(encoded, payload)
      }
      await victim.store.addBlock(encoded)
      blocks.push(block)
      payloads.set(hexOf(block.id), payload)
    }
    const [b1, , b3] = blocks
    // what the liar serves instead of a chunk: a flipped bit, an extra byte, another chunk's bytes
    const lies = new Map<string, (real: Uint8Array) => Promise<Uint8Array>>([
      [`${hexOf(b1.id)}:0`, async real => { const out = real.slice(); out[100] ^= 0x01; return out }],
      [`${hexOf(b3.id)}:0`, async real => Buffer.concat([real, Uint8Array.of(0)])],
      [`${hexOf(b3.id)}:1`, async () => liar.store.getChunk(b3.id, 0)]
    ])
    served = await lieOverSync(liar, {
      getChunk: async (id, index) => {
        const real = await liar.store.getChunk(id, index)
        return await lies.get(`${hexOf(id)}:${index}`)?.(real) ?? real
      }
    })
    await connect(victim, honest)
    await connect(victim, liar)
    await waitFor('both peers identified', async () => (await victim.net.sync.syncPeers()).length === 2)
  })

  after(async () => {
    await stopAll(nodes)
  })

  async function expectPayload (block: StoredBlock): Promise<void> {
    expect((await victim.store.get(block.id))?.payloadComplete).to.equal(true)
    expect(await collect(victim.store.readPayload(block.id))).to.deep.equal(payloads.get(hexOf(block.id)))
  }

  it('penalises a flipped bit, takes the chunk from the honest peer, and keeps the liar connected below the threshold', async () => {
    const liarId: PeerId = liar.net.libp2p.peerId
    // the liar is preferred: it is asked first for chunk 0
    await victim.net.sync.fetchPayload(blocks[0].id, { peers: [liarId] })
    await expectPayload(blocks[0])
    expect(served.to(victim.net.libp2p.peerId, 'get-chunk')).to.equal(1)
    const stats = victim.net.sync.stats
    expect(stats.offences).to.deep.equal(offencesOnly({ [SyncOffence.ChunkCorrupt]: 1 }))
    expect(stats.bans['sync-score']).to.equal(0)
    const penalties = victim.net.penalties
    expect(penalties.score(liarId)).to.be.at.most(penalties.avoidThreshold)
    expect(penalties.isAvoided(liarId)).to.equal(true)
    expect(penalties.isBanned(liarId)).to.equal(false)
    expect(connected(victim, liar)).to.equal(true)
    // gossip and sync agree: the sync score is gossipsub's application-specific score
    await waitFor('the gossip score to follow the sync score', () => (victim.net.gossip.peerScore(liarId) ?? 0) < 0)
  })

  it('does not ask the penalised peer for the next block while the honest peer has it', async () => {
    const victimId = victim.net.libp2p.peerId
    const before = { chunk: served.to(victimId, 'get-chunk'), have: served.to(victimId, 'get-have') }
    await victim.net.sync.fetchPayload(blocks[1].id, { peers: [liar.net.libp2p.peerId] })
    await expectPayload(blocks[1])
    expect(served.to(victimId, 'get-chunk')).to.equal(before.chunk)
    expect(served.to(victimId, 'get-have')).to.equal(before.have)
    expect(honest.net.sync.stats.served['get-chunk']).to.be.at.least(3)
  })

  it('bans the liar past the threshold: an extra byte and another chunk\'s bytes, then hung up and refused both ways', async () => {
    const liarId = liar.net.libp2p.peerId
    // only the liar has b3: as the last resort it is asked, and lies twice more
    await expect(victim.net.sync.fetchPayload(blocks[2].id)).to.eventually.be.rejected.with.property('code', NetErrorCode.PAYLOAD_UNAVAILABLE)
    const stats = victim.net.sync.stats
    expect(stats.offences).to.deep.equal(offencesOnly({ [SyncOffence.ChunkCorrupt]: 1, [SyncOffence.ChunkLength]: 1, [SyncOffence.ChunkSubstituted]: 1 }))
    expect(stats.bans['sync-score']).to.equal(1)
    expect(victim.net.penalties.isBanned(liarId)).to.equal(true)
    expect(victim.net.penalties.score(liarId)).to.be.at.most(victim.net.penalties.banThreshold)
    await waitFor('the victim to hang up on the liar', () => !connected(victim, liar) && !connected(liar, victim))
    expect((await victim.store.get(blocks[2].id))?.payloadComplete).to.equal(false)

    // refused both ways for the cool-off
    await expect(victim.net.libp2p.dial(liar.net.libp2p.getMultiaddrs()[0])).to.eventually.be.rejected()
    await liar.net.libp2p.dial(victim.net.libp2p.getMultiaddrs()[0]).catch(() => {})
    await waitFor('the liar\'s dial to be refused', () => victim.net.sync.stats.refused >= 2 && !connected(victim, liar))
    expect(await victim.net.sync.syncPeers()).to.have.length(1)
    await expect(victim.net.sync.syncWith(liarId)).to.eventually.be.rejected.with.property('code', NetErrorCode.PEER_BANNED)

    // the honest peer still delivers
    const requestsBefore = served.to(victim.net.libp2p.peerId, 'get-chunk')
    const payload = bytesOf(3 * CHUNK + 5, 60)
    const b4 = await honest.store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload, chunkSize: CHUNK }, honest.signer)
    await victim.store.addBlock(await honest.store.getEncoded(b4.id) as Uint8Array)
    payloads.set(hexOf(b4.id), payload)
    await victim.net.sync.fetchPayload(b4.id, { peers: [liarId] })
    await expectPayload(b4)
    expect(served.to(victim.net.libp2p.peerId, 'get-chunk')).to.equal(requestsBefore)
    const report = await victim.store.verify()
    expect(report.issues).to.deep.equal([])
  })
})

describe('net: a peer that advertises tips whose ancestry never arrives', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []

  after(async () => {
    await stopAll(nodes)
  })

  it('is penalised on every walk it lies in, avoided, and banned past the threshold', async () => {
    const liar = await startNode()
    const victim = await startNode({ blockSync: { syncOnConnect: false } })
    nodes.push(liar, victim)
    const parent = await liar.store.createBlock({ chain: ChainId.A, type: BlockType.Note }, liar.signer)
    const child = await liar.store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [parent.id] }, liar.signer)
    // the liar advertises the child as its tip and then says it has no parent for it
    const served = await lieOverSync(liar, {
      tips: async () => [child.id],
      getEncoded: async id => hexOf(id) === hexOf(child.id) ? liar.store.getEncoded(id) : undefined
    })
    await connect(victim, liar)
    await waitFor('the liar identified', async () => (await victim.net.sync.syncPeers()).length === 1)
    const liarId = liar.net.libp2p.peerId
    const penalties = victim.net.penalties

    const first = await victim.net.sync.syncWith(liarId)
    expect(first).to.include({ fetched: 1, orphaned: 1, notFound: 1, added: 0 })
    expect(victim.net.sync.stats.offences).to.deep.equal(offencesOnly({ [SyncOffence.MissingAncestry]: 1 }))
    expect(penalties.isAvoided(liarId)).to.equal(true)
    expect(penalties.isBanned(liarId)).to.equal(false)
    expect(connected(victim, liar)).to.equal(true)
    expect(await victim.store.has(child.id)).to.equal(false)

    // each later walk that meets the same lie costs it again; the fourth reaches the ban threshold
    for (let walk = 2; walk <= 4; walk++) {
      await victim.net.sync.syncWith(liarId)
      expect(victim.net.sync.stats.offences[SyncOffence.MissingAncestry]).to.equal(walk)
      expect(penalties.isBanned(liarId)).to.equal(walk === 4)
    }
    expect(victim.net.sync.stats.bans['sync-score']).to.equal(1)
    await waitFor('the victim to hang up on the liar', () => !connected(victim, liar))
    await expect(victim.net.sync.syncWith(liarId)).to.eventually.be.rejected.with.property('code', NetErrorCode.PEER_BANNED)
    expect(served.to(victim.net.libp2p.peerId, 'get-tips')).to.equal(4)
    // the orphan waits in the pool; its parent never existed anywhere, so it is still not stored
    expect(await victim.store.has(child.id)).to.equal(false)
    expect(await victim.store.has(parent.id)).to.equal(false)
  })
})
