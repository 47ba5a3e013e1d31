/**
 * Read-side chain operations with JSON results, shared by the daemon's IPC
 * methods and the CLI's offline mode so both print the same thing.
 */
import { ChainError, ChainErrorCode } from '../chain/errors.ts'
import { ChainId } from '../chain/types.ts'
import { blockToJson, parseBlockId, toHex } from './block-json.ts'
import { NotFoundError } from './errors.ts'
import type { ChainStoreApi, VerifyReport } from '../chain/types.ts'
import type { BlockJson, ChainInfoJson, ChainTipsJson } from '../protocols/ipc.ts'

export async function chainTips (store: ChainStoreApi): Promise<ChainTipsJson> {
  const [a, b] = await Promise.all([store.tips(ChainId.A), store.tips(ChainId.B)])
  return { A: a.map(toHex).sort(), B: b.map(toHex).sort() }
}

export async function chainInfo (store: ChainStoreApi): Promise<ChainInfoJson> {
  const [counts, tips] = await Promise.all([store.counts(), chainTips(store)])
  return { counts, tips }
}

export async function chainGet (store: ChainStoreApi, idHex: string): Promise<BlockJson> {
  const block = await store.get(parseBlockId(idHex))
  if (block == null) {
    throw new NotFoundError(`block ${idHex.toLowerCase()} is not in the store`)
  }
  return blockToJson(block)
}

export async function chainVerify (store: ChainStoreApi, signal?: AbortSignal): Promise<VerifyReport> {
  return store.verify({ signal })
}

/** The payload of a block, chunk hashes verified by the store as it reads. */
export async function * chainPayload (store: ChainStoreApi, idHex: string): AsyncGenerator<Uint8Array> {
  const id = parseBlockId(idHex)
  const block = await store.get(id)
  if (block == null) {
    throw new NotFoundError(`block ${idHex.toLowerCase()} is not in the store`)
  }
  if (!block.payloadComplete) {
    throw new ChainError(ChainErrorCode.CHUNK_MISSING, 'the payload of this block is not complete locally', { blockId: toHex(id) })
  }
  yield * store.readPayload(id)
}
