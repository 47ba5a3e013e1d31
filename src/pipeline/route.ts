import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** One stage of a route: the peer serving decoder layers [start, end) and where to reach it. */
export interface RouteHop {
  peerId: PeerId | string
  /** dialable addresses (added to the peer store before dialling); none = already known */
  multiaddrs?: Array<Multiaddr | string>
  start: number
  end: number
  /**
   * the stage's announced speed: ms one position takes through the hop's
   * layers (an upper bound is fine, e.g. its whole span's); its first
   * step's deadline derives from it (none = the ceiling)
   */
  msPerPosition?: number
}

export interface ResolvedHop {
  peerId: PeerId
  multiaddrs: Multiaddr[]
  start: number
  end: number
  msPerPosition?: number
}

/**
 * Checks that `route` covers decoder layers [0, numLayers) exactly once, in
 * order, and parses its peer ids and addresses. Throws ERR_PIPELINE_BAD_ROUTE.
 */
export function resolveRoute (route: RouteHop[], numLayers: number): ResolvedHop[] {
  if (!Array.isArray(route) || route.length === 0) {
    throw new PipelineError(PipelineErrorCode.BAD_ROUTE, 'the route has no stages')
  }
  let next = 0
  return route.map((hop, i) => {
    if (!Number.isSafeInteger(hop.start) || !Number.isSafeInteger(hop.end) || hop.end <= hop.start) {
      throw new PipelineError(PipelineErrorCode.BAD_ROUTE, `stage ${i} has the empty or invalid range [${hop.start}, ${hop.end})`, { stage: i })
    }
    if (hop.start !== next) {
      throw new PipelineError(PipelineErrorCode.BAD_ROUTE, `stage ${i} starts at layer ${hop.start}, expected ${next}`, { stage: i })
    }
    next = hop.end
    let peerId: PeerId
    let multiaddrs: Multiaddr[]
    try {
      peerId = typeof hop.peerId === 'string' ? peerIdFromString(hop.peerId) : hop.peerId
      multiaddrs = (hop.multiaddrs ?? []).map(a => typeof a === 'string' ? multiaddr(a) : a)
    } catch (err) {
      throw new PipelineError(PipelineErrorCode.BAD_ROUTE, `stage ${i}: ${(err as Error).message}`, { stage: i, cause: err })
    }
    const speed = hop.msPerPosition
    return { peerId, multiaddrs, start: hop.start, end: hop.end, ...(typeof speed === 'number' && Number.isFinite(speed) && speed > 0 ? { msPerPosition: speed } : {}) }
  }).map((hop, i, all) => {
    if (i === all.length - 1 && hop.end !== numLayers) {
      throw new PipelineError(PipelineErrorCode.BAD_ROUTE, `the route ends at layer ${hop.end}, the model has ${numLayers}`, { stage: i })
    }
    return hop
  })
}
