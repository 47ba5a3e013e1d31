/**
 * Storing the orphans that waited for a block: once `idHex` is stored, every
 * pooled orphan whose last missing parent it was is committed (each commit
 * under the store's lock, one at a time), and so on transitively, breadth
 * first. An orphan that still misses another parent goes back to the pool;
 * one that fails a rule needing its parents is dropped, counted and never
 * stored. Chunks an orphan brought were made durable when it arrived and
 * are indexed by its commit.
 */
import type { CommitResult } from './block-commit.ts'
import type { Orphan, OrphanPool } from './orphan-pool.ts'

export interface OrphanReleaseComponents {
  pool: Pick<OrphanPool, 'add' | 'release'>
  /** commits one orphan under the store's lock */
  commit(orphan: Orphan): Promise<CommitResult>
  /** an orphan was stored */
  onAccepted(orphan: Orphan): void
  /** an orphan failed a rule needing its parents */
  onRejected(orphan: Orphan, err: unknown): void
}

/** Stores the orphans that waited (directly or transitively) for `idHex`. */
export async function releaseOrphans (idHex: string, components: OrphanReleaseComponents): Promise<void> {
  const { pool } = components
  const queue = [idHex]
  while (queue.length > 0) {
    const ready: Orphan[] = pool.release(queue.shift() as string)
    for (const orphan of ready) {
      try {
        const result = await components.commit(orphan)
        if (result.status === 'added') {
          components.onAccepted(orphan)
          queue.push(orphan.idHex)
        } else if (result.status === 'orphaned') {
          pool.add({ ...orphan, missing: result.missing })
        }
      } catch (err) {
        // a rule needing the parents failed: the orphan is dropped, counted, never stored
        components.onRejected(orphan, err)
      }
    }
  }
}
