/**
 * `blyd train --via mesh`: the route of a training job through the mesh's
 * span holders (the spans of the model's live records, routed as a
 * generation is: mesh-route.ts routeSpans; this node's own span is left
 * out, libp2p does not dial itself), each hop a /bly/train/1.0.0 stream to
 * the holder over its recorded addresses. Each hop also lists every other
 * live holder whose span covers its layers (the same bounds or wider: a
 * stage serves any range inside what it holds): the driver replaces a
 * failed holder with them, in order, and has them audit its answers.
 */
import { TRAIN_PROTOCOL } from '../../protocols/train.ts'
import { routeSpans } from '../mesh-route.ts'
import type { TrainHop } from './pipeline-train.ts'
import type { TrainHolder } from './train-stage-set.ts'
import type { LiveSpan } from '../../net/records/discover.ts'
import type { Libp2p } from '@libp2p/interface'

function holder (libp2p: Pick<Libp2p, 'dialProtocol'>, s: LiveSpan): TrainHolder {
  return {
    id: s.peerId.toString(),
    connect: async () => libp2p.dialProtocol(s.addrs.map(a => a.getComponents().some(c => c.name === 'p2p') ? a : a.encapsulate(`/p2p/${s.peerId.toString()}`)), TRAIN_PROTOCOL)
  }
}

export function trainRoute (libp2p: Pick<Libp2p, 'dialProtocol' | 'peerId'>, spans: readonly LiveSpan[], numLayers: number): TrainHop[] {
  const others = spans.filter(s => !s.peerId.equals(libp2p.peerId))
  return routeSpans(others, numLayers).map(s => {
    const seen = new Set([s.peerId.toString()])
    const alternatives: TrainHolder[] = []
    for (const o of others) {
      const id = o.peerId.toString()
      if (o.start <= s.start && o.end >= s.end && !seen.has(id)) {
        seen.add(id)
        alternatives.push(holder(libp2p, o))
      }
    }
    return { start: s.start, end: s.end, ...holder(libp2p, s), alternatives }
  })
}
