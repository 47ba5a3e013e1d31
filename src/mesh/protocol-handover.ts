/**
 * Protocol handlers that pass from one stage server to the next on the same
 * libp2p node. A node moving its span starts the new stage while the old one
 * still finishes its open sessions: each stage gets its own view of
 * handle/unhandle (stageLibp2p). handle() takes the protocol over (the new
 * stage gets every new stream from then on); unhandle() removes the handler
 * only while this stage still owns it, so the old stage's stop() does not
 * remove its successor's handlers.
 */
import type { StageServerComponents } from '../pipeline/stage-server.ts'
import type { Libp2p } from '@libp2p/interface'

export class ProtocolOwners {
  private readonly libp2p: Libp2p
  private readonly owners: Map<string, symbol>

  constructor (libp2p: Libp2p) {
    this.libp2p = libp2p
    this.owners = new Map()
  }

  /** The libp2p a stage server gets: handlers it registers are its own until another stage takes them over. */
  forStage (): StageServerComponents['libp2p'] & { token: symbol } {
    const token = Symbol('stage')
    const libp2p = this.libp2p
    return {
      token,
      handle: async (protocol, handler, options) => {
        await libp2p.handle(protocol, handler, { ...options, force: true })
        for (const p of Array.isArray(protocol) ? protocol : [protocol]) {
          this.owners.set(p, token)
        }
      },
      unhandle: async (protocols, options) => {
        const mine = (Array.isArray(protocols) ? protocols : [protocols]).filter(p => this.owners.get(p) === token)
        for (const p of mine) {
          this.owners.delete(p)
        }
        if (mine.length > 0) {
          await libp2p.unhandle(mine, options)
        }
      }
    }
  }

  /** Removes every handler still owned by a stage other than `token` (one the new stage did not take over). */
  async releaseOthers (token: symbol): Promise<void> {
    const others = [...this.owners].filter(([, owner]) => owner !== token).map(([p]) => p)
    for (const p of others) {
      this.owners.delete(p)
    }
    if (others.length > 0) {
      await this.libp2p.unhandle(others)
    }
  }
}
