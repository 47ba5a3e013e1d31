/**
 * A model's genesis: `model import` writes the manifest and layer blocks
 * (model/import), then the genesis Params block (protocols/params.md)
 * authored by the importer, whose key is thereby the model's first and only
 * validator (the fold takes the set of G0 from the manifest's author).
 *
 * Ordering and durability: the Params block is written after the import
 * finished (a crash before leaves a model without genesis; the fold reports
 * `missing` and re-running the import writes it). Its timestamp is fixed
 * (IMPORT_TIMESTAMP), so the same importer writing the same params always
 * produces the same block id, and a re-import finds the block already there
 * and writes nothing: one genesis per model whatever the number of imports.
 */
import { BlockType } from '../chain/types.ts'
import { IMPORT_TIMESTAMP } from '../model/import/constants.ts'
import { importModel } from '../model/import/importer.ts'
import { toHex } from '../protocols/hex.ts'
import { ParamsField } from '../protocols/learning-blocks.ts'
import { paramsBlock } from './new-blocks.ts'
import { defaultParams } from './params-defaults.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { ImportModelInit, ImportResult } from '../model/import/importer.ts'
import type { ParamsBody } from '../protocols/params.ts'

/** The Params blocks of `modelId` authored by `author`, ids ascending. */
export async function paramsBlocksBy (store: ChainStoreApi, modelId: Uint8Array, author: Uint8Array): Promise<string[]> {
  const modelHex = toHex(modelId)
  const authorHex = toHex(author)
  const out: string[] = []
  for await (const block of store.byType(BlockType.Params)) {
    const model = block.header.fields.get(ParamsField.MODEL)
    if (model?.kind === 'bytes' && toHex(model.value) === modelHex && toHex(block.header.author) === authorHex) {
      out.push(toHex(block.id))
    }
  }
  return out.sort()
}

/**
 * Writes the genesis Params block of `modelId` (the manifest's author must
 * be `signer`: the store refuses another author) unless `signer` already
 * wrote one. `body`: the params (default: the whole defaults table).
 * Returns the block id and whether this call wrote it.
 */
export async function writeGenesisParams (store: ChainStoreApi, signer: BlockSigner, modelId: Uint8Array, body: ParamsBody = defaultParams()): Promise<{ id: string, created: boolean }> {
  const existing = await paramsBlocksBy(store, modelId, signer.publicKey)
  if (existing.length > 0) {
    return { id: existing[0], created: false }
  }
  const block = await store.createBlock({ ...paramsBlock(modelId, body), timestamp: IMPORT_TIMESTAMP }, signer)
  return { id: toHex(block.id), created: true }
}

export interface ImportWithGenesisResult extends ImportResult {
  /** the genesis Params block id (hex) */
  params: string
  /** this import wrote it (false: it was already on chain) */
  paramsCreated: boolean
}

/** importModel(), then the model's genesis Params block (see the file comment). `params`: the genesis body (default: the defaults). */
export async function importModelWithGenesis (init: ImportModelInit & { params?: ParamsBody }): Promise<ImportWithGenesisResult> {
  const { params, ...rest } = init
  const result = await importModel(rest)
  init.signal?.throwIfAborted()
  const genesis = await writeGenesisParams(init.store, init.signer, Uint8Array.from(Buffer.from(result.modelId, 'hex')), params)
  return {
    ...result,
    blocks: result.blocks + 1,
    existing: result.existing + (genesis.created ? 0 : 1),
    params: genesis.id,
    paramsCreated: genesis.created
  }
}
