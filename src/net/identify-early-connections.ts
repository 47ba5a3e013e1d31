/**
 * Identify again the connections a libp2p node opened while it was starting.
 *
 * libp2p starts its services together. Bootstrap discovery (and the
 * reconnect queue of a persisted peer store) dials at once, so the first
 * connection can be identified before another service, kad-dht above all, has
 * registered its topology with the registrar. The registrar tells topologies
 * about a peer only on `peer:identify`, and kad-dht's start-up load from the
 * peer store takes only peers it tagged before, so such a peer never enters
 * the DHT's routing table: the node answers queries but cannot make any, and
 * its span announcements reach nobody until some later identify (measured: a
 * holder bootstrapped to one peer, unseen for minutes, 2 of 18 daemon starts).
 *
 * Ordering: the listener is added before the node starts and runs once, on
 * libp2p's `start` event, which fires after every service's start() and
 * afterStart(); every topology is registered then. Each connection open at
 * that moment is identified again, which dispatches `peer:identify` to all
 * of them. A connection whose first identify is still running needs nothing:
 * its event comes after the registrations. A failed identify is logged, not
 * thrown (the connection may have closed meanwhile).
 */
import type { BlyLogger } from '../protocols/logger.ts'
import type { Identify } from '@libp2p/identify'
import type { Connection, Libp2p } from '@libp2p/interface'

export interface EarlyConnectionsStats {
  /** connections identified again at start */
  reidentified: number
  /** of those, identifies that failed */
  failed: number
}

/**
 * On the node's next `start` event, identify every open connection again.
 * Call before `node.start()`. Resolves with what it did once that start's
 * identifies have settled (tests await it; the daemon need not).
 */
export async function identifyEarlyConnections (node: Libp2p<{ identify: Identify }>, log?: BlyLogger): Promise<EarlyConnectionsStats> {
  const { promise, resolve } = Promise.withResolvers<EarlyConnectionsStats>()
  node.addEventListener('start', () => {
    const connections: Connection[] = node.getConnections().filter(c => c.status === 'open')
    const stats: EarlyConnectionsStats = { reidentified: connections.length, failed: 0 }
    void Promise.all(connections.map(async (connection) => {
      try {
        await node.services.identify.identify(connection)
      } catch (err) {
        stats.failed++
        log?.('identify again of %p at start failed - %e', connection.remotePeer, err)
      }
    })).then(() => {
      if (stats.reidentified > 0) {
        log?.('identified again %d connections opened while starting (%d failed)', stats.reidentified, stats.failed)
      }
      resolve(stats)
    })
  }, { once: true })
  return promise
}
