/**
 * Bounded pool of validated blocks whose parents are not known yet. FIFO
 * eviction once either bound (entries, bytes) is exceeded. When a block is
 * stored, `release(id)` hands back the orphans that no longer miss a parent.
 */
import type { SignedHeader } from './types.ts'

export interface Orphan {
  idHex: string
  block: SignedHeader
  /** the signed header bytes as received */
  encoded: Uint8Array
  /** true when the payload's chunk files were already written */
  chunksWritten: boolean
  /** chunk hashes (hex) written for it; gc() must keep these */
  chunkHexes: string[]
  /** parents (hex) not in the store yet */
  missing: Set<string>
}

export interface OrphanPoolInit {
  maxEntries: number
  maxBytes: number
}

export class OrphanPool {
  private readonly maxEntries: number
  private readonly maxBytes: number
  /** insertion-ordered: the first entry is the oldest */
  private readonly entries: Map<string, Orphan>
  /** parent hex -> ids of orphans waiting for it */
  private readonly waiting: Map<string, Set<string>>
  private bytes: number
  evicted: number

  constructor (init: OrphanPoolInit) {
    this.maxEntries = init.maxEntries
    this.maxBytes = init.maxBytes
    this.entries = new Map()
    this.waiting = new Map()
    this.bytes = 0
    this.evicted = 0
  }

  get size (): number {
    return this.entries.size
  }

  get byteSize (): number {
    return this.bytes
  }

  has (idHex: string): boolean {
    return this.entries.has(idHex)
  }

  /** add an orphan (no-op when present); returns the orphans evicted to make room */
  add (orphan: Orphan): Orphan[] {
    const existing = this.entries.get(orphan.idHex)
    if (existing != null) {
      // the same orphan again, perhaps now with its payload written
      if (orphan.chunksWritten && !existing.chunksWritten) {
        existing.chunksWritten = true
        existing.chunkHexes = orphan.chunkHexes
      }
      return []
    }
    if (this.maxEntries <= 0) {
      return []
    }
    this.entries.set(orphan.idHex, orphan)
    this.bytes += orphan.encoded.length
    for (const parent of orphan.missing) {
      let set = this.waiting.get(parent)
      if (set == null) {
        set = new Set()
        this.waiting.set(parent, set)
      }
      set.add(orphan.idHex)
    }
    const evicted: Orphan[] = []
    while (this.entries.size > this.maxEntries || (this.bytes > this.maxBytes && this.entries.size > 1)) {
      const oldest = this.entries.values().next().value as Orphan
      this.delete(oldest.idHex)
      evicted.push(oldest)
      this.evicted++
    }
    return evicted
  }

  delete (idHex: string): void {
    const orphan = this.entries.get(idHex)
    if (orphan == null) {
      return
    }
    this.entries.delete(idHex)
    this.bytes -= orphan.encoded.length
    for (const parent of orphan.missing) {
      const set = this.waiting.get(parent)
      set?.delete(idHex)
      if (set?.size === 0) {
        this.waiting.delete(parent)
      }
    }
  }

  /** `idHex` is now stored: the orphans whose every parent is now known, removed from the pool */
  release (idHex: string): Orphan[] {
    const ids = this.waiting.get(idHex)
    if (ids == null) {
      return []
    }
    this.waiting.delete(idHex)
    const ready: Orphan[] = []
    for (const id of ids) {
      const orphan = this.entries.get(id)
      if (orphan == null) {
        continue
      }
      orphan.missing.delete(idHex)
      if (orphan.missing.size === 0) {
        this.entries.delete(id)
        this.bytes -= orphan.encoded.length
        ready.push(orphan)
      }
    }
    return ready
  }

  /** parents (hex) some orphan waits for that are not orphans themselves: what sync should fetch */
  missingParents (): string[] {
    return [...this.waiting.keys()].filter(p => !this.entries.has(p))
  }

  /** chunk hashes (hex) whose files orphans rely on */
  pinnedChunks (): Set<string> {
    const out = new Set<string>()
    for (const o of this.entries.values()) {
      for (const h of o.chunkHexes) {
        out.add(h)
      }
    }
    return out
  }

  clear (): void {
    this.entries.clear()
    this.waiting.clear()
    this.bytes = 0
  }
}
