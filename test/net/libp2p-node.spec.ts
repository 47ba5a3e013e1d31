import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { BLOCK_SYNC_PROTOCOL, DHT_PROTOCOL, KEEP_ALIVE_TAG } from '../../src/net/index.ts'
import { connect, startNode, stopAll, waitFor } from './helpers.ts'
import type { TestNode } from './helpers.ts'

describe('net: the libp2p node', function () {
  this.timeout(30_000)
  const nodes: TestNode[] = []

  afterEach(async () => {
    await stopAll(nodes)
  })

  it('speaks the private DHT and the block exchange, and dials its bootstrap list', async () => {
    const n1 = await startNode()
    nodes.push(n1)
    const n2 = await startNode({ bootstrap: [n1.net.libp2p.getMultiaddrs()[0].toString()] })
    nodes.push(n2)
    await waitFor('n2 to reach its bootstrap peer', () => n2.net.libp2p.getConnections(n1.net.libp2p.peerId).length > 0)
    await waitFor('identify', async () => {
      const peer = await n2.net.libp2p.peerStore.get(n1.net.libp2p.peerId)
      return peer.protocols.includes(BLOCK_SYNC_PROTOCOL) && peer.protocols.includes(DHT_PROTOCOL)
    })
    const peer = await n2.net.libp2p.peerStore.get(n1.net.libp2p.peerId)
    expect(peer.protocols).to.not.include('/ipfs/kad/1.0.0')
  })

  it('persists its peer store and redials known peers after a restart', async () => {
    const n1 = await startNode()
    nodes.push(n1)
    const dir = await mkdtemp(join(tmpdir(), 'bly-net-restart-'))
    const first = await startNode({ datastorePath: join(dir, 'peers'), dir })
    nodes.push(first)
    await connect(first, n1)
    await waitFor('n1 tagged keep-alive', async () => {
      const peer = await first.net.libp2p.peerStore.get(n1.net.libp2p.peerId)
      return peer.tags.has(KEEP_ALIVE_TAG)
    })
    const block = await first.store.createBlock({ chain: ChainId.A, type: BlockType.Note }, first.signer)
    await first.stop()

    // same key, same directory, no bootstrap list: the peer store alone leads back to n1
    const again = await startNode({ datastorePath: join(dir, 'peers'), dir, privateKey: first.privateKey })
    nodes.push(again)
    // libp2p's reconnect queue dials keep-alive peers at start, retrying with back-off: a bound for a loaded 2-core box
    await waitFor('the restarted node to redial n1', () => again.net.libp2p.getConnections(n1.net.libp2p.peerId).length > 0, 30_000)
    // and the reconnect catches n1 up on what was authored while apart
    await waitFor('n1 to fetch the block', async () => n1.store.has(block.id))
  })
})
