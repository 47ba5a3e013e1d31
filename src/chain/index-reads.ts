/**
 * Reads of the chain store's LevelDB index (keys.ts): a block is visible
 * iff its header key exists, and every secondary key (child, tip, order,
 * type, model unit) was written in the same batch as that header key
 * (block-commit.ts), so a read here never sees a block half indexed. A
 * secondary key whose header is gone yields nothing rather than throwing.
 */
import { decodeBlockHeader, decodeSignedBlockHeader } from '../protocols/block-header.ts'
import { FLAG_PAYLOAD_COMPLETE, Prefix, decodeRecord, headerKey, range, u32, u8 } from './keys.ts'
import { ChainId } from './types.ts'
import type { HeaderRecord } from './keys.ts'
import type { BlockType, StoredBlock } from './types.ts'
import type { ClassicLevel } from 'classic-level'

/** The index: byte keys and values. */
export type ChainDb = ClassicLevel<Uint8Array, Uint8Array>

/** The StoredBlock of header record `record` stored under `id`. */
export function storedBlock (id: Uint8Array, record: HeaderRecord): StoredBlock {
  const envelope = decodeSignedBlockHeader(record.signedHeader)
  return {
    id: new Uint8Array(id),
    header: decodeBlockHeader(envelope.header),
    headerBytes: envelope.header,
    signature: envelope.signature,
    receivedAt: record.receivedAt,
    payloadComplete: (record.flags & FLAG_PAYLOAD_COMPLETE) !== 0
  }
}

export async function readBlock (db: ChainDb, id: Uint8Array): Promise<StoredBlock | undefined> {
  const raw = await db.get(headerKey(id))
  if (raw == null) {
    return undefined
  }
  return storedBlock(id, decodeRecord(raw))
}

/** The signed header bytes of `id` as received (a copy). */
export async function readEncoded (db: ChainDb, id: Uint8Array): Promise<Uint8Array | undefined> {
  const raw = await db.get(headerKey(id))
  return raw == null ? undefined : decodeRecord(raw).signedHeader.slice()
}

export async function readChildren (db: ChainDb, id: Uint8Array): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const key of db.keys(range(Prefix.Child, id))) {
    out.push(new Uint8Array(key.subarray(33)))
  }
  return out
}

export async function readTips (db: ChainDb, chain?: ChainId): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for (const c of chain == null ? [ChainId.A, ChainId.B] : [chain]) {
    for await (const key of db.keys(range(Prefix.Tip, u8(c)))) {
      out.push(new Uint8Array(key.subarray(2)))
    }
  }
  return out
}

/** every block parents-first: ordered by (height, id), the same on every node holding the same blocks */
export async function * readTopological (db: ChainDb, chain?: ChainId): AsyncGenerator<StoredBlock> {
  for await (const [key, value] of db.iterator(range(Prefix.Order))) {
    if (chain != null && value[0] !== chain) {
      continue
    }
    const block = await readBlock(db, key.subarray(5))
    if (block != null) {
      yield block
    }
  }
}

export async function * readByType (db: ChainDb, type: BlockType): AsyncGenerator<StoredBlock> {
  for await (const key of db.keys(range(Prefix.Type, u8(type)))) {
    const block = await readBlock(db, key.subarray(6))
    if (block != null) {
      yield block
    }
  }
}

export async function readByModelUnit (db: ChainDb, modelId: Uint8Array, unit: number): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for await (const key of db.keys(range(Prefix.ModelUnit, modelId, u32(unit)))) {
    const block = await readBlock(db, key.subarray(37))
    if (block != null) {
      out.push(block)
    }
  }
  return out
}
