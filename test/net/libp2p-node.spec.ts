import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { bootstrap } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { identifyEarlyConnections } from '../../src/net/identify-early-connections.ts'
import { BLOCK_SYNC_PROTOCOL, DHT_PROTOCOL, KEEP_ALIVE_TAG } from '../../src/net/index.ts'
import { blyConnectionEncrypter, blyStreamMuxer } from '../../src/net/libp2p-node.ts'
import { connect, startNode, stopAll, waitFor } from './helpers.ts'
import type { TestNode } from './helpers.ts'
import type { Identify } from '@libp2p/identify'
import type { Libp2p, Startable } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'

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

  describe('a bootstrap peer identified before the DHT registered its topology', () => {
    /**
     * A libp2p node bootstrapped to `to` whose kad-dht starts `delayMs` late,
     * so the bootstrap connection is identified before the DHT's topology
     * exists: the race a daemon's start loses now and then, made certain.
     */
    async function lateDhtNode (to: TestNode, delayMs: number): Promise<Libp2p<{ identify: Identify, dht: KadDHT }>> {
      return createLibp2p({
        start: false,
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [blyConnectionEncrypter()],
        streamMuxers: [blyStreamMuxer()],
        peerDiscovery: [bootstrap({ list: [to.net.libp2p.getMultiaddrs()[0].toString()], timeout: 0 })],
        services: {
          identify: identify(),
          ping: ping(),
          dht: (components: any) => {
            const dht = kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper })(components) as KadDHT & Startable
            const start = dht.start.bind(dht)
            dht.start = async () => {
              await sleep(delayMs)
              await start()
            }
            return dht
          }
        }
      })
    }

    const tableSize = (node: Libp2p<{ dht: KadDHT }>): number => (node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
    const started: Array<Libp2p<any>> = []

    afterEach(async () => {
      await Promise.allSettled(started.map(async n => n.stop()))
      started.length = 0
    })

    it('without a second identify the peer never enters the routing table (the race this guards)', async () => {
      const n1 = await startNode()
      nodes.push(n1)
      const node = await lateDhtNode(n1, 500)
      started.push(node)
      await node.start()
      expect(node.getConnections(n1.net.libp2p.peerId)).to.have.length.greaterThan(0)
      await sleep(2000)
      expect(tableSize(node)).to.equal(0)
    })

    it('identifyEarlyConnections identifies it again once every service started: it enters the routing table', async () => {
      const n1 = await startNode()
      nodes.push(n1)
      const node = await lateDhtNode(n1, 500)
      started.push(node)
      const done = identifyEarlyConnections(node)
      await node.start()
      const stats = await done
      expect(stats).to.deep.equal({ reidentified: 1, failed: 0 })
      await waitFor('n1 in the routing table', () => tableSize(node) === 1)
    })
  })
})
