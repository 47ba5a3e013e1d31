/**
 * `blyd train --via mesh`: the route of a training job through the mesh's
 * span holders (the spans of the model's live records, routed as a
 * generation is: mesh-route.ts routeSpans; this node's own span is left
 * out, libp2p does not dial itself), each hop a /bly/train/1.0.0 stream to
 * the holder over its recorded addresses.
 */
import { TRAIN_PROTOCOL } from '../../protocols/train.ts'
import { routeSpans } from '../mesh-route.ts'
import type { TrainHop } from './pipeline-train.ts'
import type { LiveSpan } from '../../net/records/discover.ts'
import type { Libp2p } from '@libp2p/interface'

export function trainRoute (libp2p: Pick<Libp2p, 'dialProtocol' | 'peerId'>, spans: readonly LiveSpan[], numLayers: number): TrainHop[] {
  const others = spans.filter(s => !s.peerId.equals(libp2p.peerId))
  return routeSpans(others, numLayers).map(s => ({
    start: s.start,
    end: s.end,
    connect: async () => libp2p.dialProtocol(s.addrs.map(a => a.getComponents().some(c => c.name === 'p2p') ? a : a.encapsulate(`/p2p/${s.peerId.toString()}`)), TRAIN_PROTOCOL)
  }))
}
