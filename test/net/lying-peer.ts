/**
 * A real node that lies over the block exchange: its /bly/blocks/1.0.0
 * handler is the production server (serveSyncStream) answering from a view
 * of its chain store whose answers the test rewrites.
 */
import { BLOCK_SYNC_DEFAULTS, BLOCK_SYNC_PROTOCOL } from '../../src/net/constants.ts'
import { serveSyncStream } from '../../src/net/sync-server.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import type { TestNode } from './helpers.ts'
import type { ChainStoreApi } from '../../src/chain/types.ts'
import type { PeerId } from '@libp2p/interface'

export type Lies = Partial<Pick<ChainStoreApi, 'tips' | 'getEncoded' | 'get' | 'getChunk'>>

/** `store` with the methods in `lies` replaced. */
export function lyingView (store: ChainStoreApi, lies: Lies): ChainStoreApi {
  return new Proxy(store, {
    get (target, prop, receiver) {
      const lie = (lies as Record<string | symbol, unknown>)[prop]
      if (lie != null) {
        return lie
      }
      const value = Reflect.get(target, prop, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}

/** Requests a lying node answered, by requesting peer and type. */
export class Served {
  private readonly counts = new Map<string, Record<string, number>>()

  add (peer: PeerId, type: string): void {
    const key = peer.toString()
    const byType = this.counts.get(key) ?? {}
    byType[type] = (byType[type] ?? 0) + 1
    this.counts.set(key, byType)
  }

  /** requests of `type` answered to `peer` */
  to (peer: PeerId, type: string): number {
    return this.counts.get(peer.toString())?.[type] ?? 0
  }
}

/**
 * Make `node` answer block-sync requests from `lyingView(node.store, lies)`;
 * call before other nodes connect. Returns what it answered to whom.
 */
export async function lieOverSync (node: TestNode, lies: Lies): Promise<Served> {
  const served = new Served()
  const store = lyingView(node.store, lies)
  const libp2p = node.net.libp2p
  await libp2p.unhandle(BLOCK_SYNC_PROTOCOL)
  await libp2p.handle(BLOCK_SYNC_PROTOCOL, (stream, connection) => {
    serveSyncStream(stream, {
      store,
      maxMessageBytes: BLOCK_SYNC_DEFAULTS.maxRequestBytes,
      idleTimeoutMs: BLOCK_SYNC_DEFAULTS.idleTimeoutMs,
      maxInflight: BLOCK_SYNC_DEFAULTS.maxInboundRequestsPerPeer,
      log: silentLogger().forComponent('test:lying-peer'),
      onServed: (type) => { served.add(connection.remotePeer, type) }
    })
  }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
  return served
}

export function hexOf (id: Uint8Array): string {
  return Buffer.from(id).toString('hex')
}
