import type { KadDHT } from '@libp2p/kad-dht'

/**
 * True when the DHT has at least one peer to query. kad-dht queries wait for
 * a peer (until their signal aborts) while the routing table is empty, so
 * callers skip the network instead of blocking.
 */
export function dhtHasPeers (dht: KadDHT): boolean {
  const table = (dht as KadDHT & { routingTable?: { size?: unknown } }).routingTable
  return typeof table?.size !== 'number' || table.size > 0
}
