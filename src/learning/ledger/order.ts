/**
 * The fold order of the ledger (protocols/ledger.md, "Order"): a block's
 * depth is 0 without parents, else 1 + the largest depth of its parents (on
 * either chain). It is fixed by the block's hash (its parents are part of
 * it), so it never changes once the block exists, and a block always sorts
 * after its parents: a Transfer listing the block that funded it is folded
 * after it. Ties are broken by block id (lowercase hex = bytewise order).
 */
import { toHex } from '../../protocols/hex.ts'
import type { Position } from './types.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

/** -1, 0, 1 by depth then block id. */
export function comparePositions (a: Position, b: Position): number {
  if (a.depth !== b.depth) {
    return a.depth < b.depth ? -1 : 1
  }
  if (a.block === b.block) {
    return 0
  }
  return a.block < b.block ? -1 : 1
}

/** The later of two positions. */
export function laterPosition (a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b
}

/**
 * Depths of stored blocks, each computed once (`memo` may be kept between
 * folds: a depth never changes). Iterative, so a chain of a million
 * transfers needs no deep stack. A parent the store does not hold (never
 * the case for a stored block: the store parks orphans) counts as depth -1.
 */
export class DepthIndex {
  private readonly store: Pick<ChainStoreApi, 'get'>
  private readonly memo: Map<string, number>

  constructor (store: Pick<ChainStoreApi, 'get'>, memo: Map<string, number> = new Map()) {
    this.store = store
    this.memo = memo
  }

  async depth (id: Uint8Array): Promise<number> {
    const root = toHex(id)
    const known = this.memo.get(root)
    if (known != null) {
      return known
    }
    const stack: Array<{ id: Uint8Array, hex: string, parents?: Uint8Array[] }> = [{ id, hex: root }]
    while (stack.length > 0) {
      const top = stack[stack.length - 1]
      if (this.memo.has(top.hex)) {
        stack.pop()
        continue
      }
      if (top.parents == null) {
        const block = await this.store.get(top.id)
        top.parents = block?.header.parents ?? []
        if (block == null) {
          this.memo.set(top.hex, -1)
          stack.pop()
          continue
        }
      }
      let pending = false
      let deepest = -1
      for (const p of top.parents) {
        const hex = toHex(p)
        const d = this.memo.get(hex)
        if (d == null) {
          pending = true
          stack.push({ id: p, hex })
        } else if (d > deepest) {
          deepest = d
        }
      }
      if (!pending) {
        this.memo.set(top.hex, deepest + 1)
        stack.pop()
      }
    }
    return this.memo.get(root) as number
  }

  async position (id: Uint8Array): Promise<Position> {
    return { depth: await this.depth(id), block: toHex(id) }
  }
}
