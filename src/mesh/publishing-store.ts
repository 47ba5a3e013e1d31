/**
 * A view of the chain store whose createBlock() also hands each new block to
 * `onCreated` (the daemon gossips it). Everything else goes straight to the
 * store. The daemon gives this view to the code paths that author blocks
 * (`chain.put`, `model.import`), so every locally created block is published.
 */
import type { ChainStoreApi, StoredBlock } from '../chain/types.ts'

export function publishingStore (store: ChainStoreApi, onCreated: (block: StoredBlock) => void): ChainStoreApi {
  return new Proxy(store, {
    get (target, prop) {
      if (prop === 'createBlock') {
        return async (...args: Parameters<ChainStoreApi['createBlock']>): Promise<StoredBlock> => {
          const block = await target.createBlock(...args)
          onCreated(block)
          return block
        }
      }
      const value = Reflect.get(target, prop)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}
