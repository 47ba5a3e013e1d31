/**
 * The models the HTTP API names: every model manifest on chain A, read from
 * the block headers alone (id, name, author, timestamp; no payload), and
 * how a request's `model` picks one: the full hex id, else a manifest name
 * (exactly one model with it), else a unique id prefix of at least 8 hex
 * characters. `model` may be omitted when exactly one model is on chain.
 */
import { BlockType } from '../../chain/types.ts'
import { ManifestField, MIN_MODEL_ID_PREFIX } from '../../model/import/constants.ts'
import { HttpApiError, HttpErrorCode } from './errors.ts'
import type { ChainStoreApi } from '../../chain/types.ts'

export interface CatalogModel {
  /** the manifest block id, hex */
  id: string
  /** the manifest's name ('' when none) */
  name: string
  /** the importer's public key, hex */
  author: string
  /** the manifest block's timestamp, seconds since the epoch */
  created: number
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Every model manifest in the store, by id. */
export async function listModels (store: ChainStoreApi): Promise<CatalogModel[]> {
  const out: CatalogModel[] = []
  for await (const block of store.byType(BlockType.ModelManifest)) {
    const name = block.header.fields.get(ManifestField.NAME)
    out.push({
      id: hex(block.id),
      name: name?.kind === 'string' ? name.value : '',
      author: hex(block.header.author),
      created: Number(block.header.timestamp / 1000n)
    })
  }
  return out.sort((a, b) => a.id < b.id ? -1 : 1)
}

function ids (models: CatalogModel[]): string {
  return models.map(m => m.name !== '' ? `${m.id} (${m.name})` : m.id).join(', ')
}

/** The model `model` names (see the file's comment); HttpApiError MODEL_NOT_FOUND or AMBIGUOUS_MODEL. */
export async function resolveModel (store: ChainStoreApi, model: string | undefined): Promise<CatalogModel> {
  const models = await listModels(store)
  if (model == null) {
    if (models.length === 1) {
      return models[0]
    }
    if (models.length === 0) {
      throw new HttpApiError(HttpErrorCode.MODEL_NOT_FOUND, 'no model on chain A: import one (blyd model import) or join a swarm that has one')
    }
    throw new HttpApiError(HttpErrorCode.AMBIGUOUS_MODEL, `"model" is required: ${models.length} models are on chain A: ${ids(models)}`)
  }
  const text = model.trim()
  const lower = text.toLowerCase()
  const byId = models.find(m => m.id === lower)
  if (byId != null) {
    return byId
  }
  const byName = models.filter(m => m.name !== '' && m.name === text)
  if (byName.length === 1) {
    return byName[0]
  }
  if (byName.length > 1) {
    throw new HttpApiError(HttpErrorCode.AMBIGUOUS_MODEL, `${byName.length} models are named ${JSON.stringify(text)}: name one by its id: ${ids(byName)}`)
  }
  if (/^[0-9a-f]+$/.test(lower) && lower.length >= MIN_MODEL_ID_PREFIX) {
    const byPrefix = models.filter(m => m.id.startsWith(lower))
    if (byPrefix.length === 1) {
      return byPrefix[0]
    }
    if (byPrefix.length > 1) {
      throw new HttpApiError(HttpErrorCode.AMBIGUOUS_MODEL, `${byPrefix.length} models have ids starting with ${lower}: ${ids(byPrefix)}`)
    }
  }
  throw new HttpApiError(HttpErrorCode.MODEL_NOT_FOUND, `the model ${JSON.stringify(text)} does not exist on chain A (give a model's id, a unique id prefix of at least ${MIN_MODEL_ID_PREFIX} hex characters, or its name; GET /v1/models lists them)`)
}
