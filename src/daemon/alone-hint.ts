/**
 * What a node with no bootstrap peers says about it (the `net.alone` log line
 * at start and the human `blyd status`): it is alone until a peer dials it,
 * and how to join a swarm or let others join it.
 */
export function aloneHint (addrs: readonly string[]): string {
  const own = addrs.length > 0 ? addrs[0] : 'an address from this node\'s blyd status'
  return 'no bootstrap peers: this node is alone until another node dials it. ' +
    'To join a swarm, start with --bootstrap /ip4/HOST/tcp/PORT/p2p/PEER_ID (an address from a running node\'s blyd status; or env BLYD_BOOTSTRAP, config key bootstrap); ' +
    `to let another node join this one, start that node with --bootstrap ${own}`
}
