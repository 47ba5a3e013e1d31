/**
 * IPC methods of datasets: `data.add` (the daemon reads the file at the
 * absolute path given: the socket is local, so caller and daemon share the
 * file system, and a 256 MiB corpus never crosses the socket as JSON),
 * `data.list` and `data.show`.
 *
 * Adds run one at a time (a queue in this registration, not module state),
 * so two concurrent adds of one name cannot both pass the name check.
 */
import { isAbsolute } from 'node:path'
import { addDatasetFromFile, listDatasets, showDataset } from '../learning/dataset-store.ts'
import { InvalidParamsError } from './errors.ts'
import { noParams, objectParams, oneOf, optionalString, requiredString } from './params.ts'
import type { IpcServer } from './ipc-server.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { DataAddParams, DataShowParams, DatasetJson } from '../protocols/ipc.ts'

export interface DataMethodContext {
  ipc: IpcServer
  store(): ChainStoreApi
  signer(): BlockSigner
  /** called after a dataset block was written */
  onAdded?(dataset: DatasetJson): void
}

function absolutePath (value: unknown, name: string): string {
  const path = requiredString(value, name)
  if (!isAbsolute(path)) {
    throw new InvalidParamsError(`"${name}" must be an absolute path (the daemon's working directory is not the caller's)`)
  }
  return path
}

function optionalInteger (value: unknown, name: string): number | undefined {
  if (value === undefined) {
    return undefined
  }
  if (!Number.isSafeInteger(value)) {
    throw new InvalidParamsError(`"${name}" must be an integer`)
  }
  return value as number
}

const addParams = objectParams<{ [K in keyof Required<DataAddParams>]: DataAddParams[K] }>({
  path: absolutePath,
  name: requiredString,
  model: optionalString,
  format: oneOf(['text', 'ids'] as const),
  evalPermille: optionalInteger,
  splitTokens: optionalInteger
})

const showParams = objectParams<{ [K in keyof Required<DataShowParams>]: DataShowParams[K] }>({
  dataset: requiredString,
  model: optionalString
})

export function registerDataMethods (ctx: DataMethodContext): void {
  const { ipc } = ctx
  let adding: Promise<unknown> = Promise.resolve()

  ipc.register('data.add', addParams, async (params) => {
    const run = adding.then(async () => addDatasetFromFile({ store: ctx.store(), signer: ctx.signer(), ...params }))
    adding = run.catch(() => {})
    const dataset = await run
    ctx.onAdded?.(dataset)
    return dataset
  })

  ipc.register('data.list', noParams, async () => ({ datasets: await listDatasets(ctx.store()) }))

  ipc.register('data.show', showParams, async ({ dataset, model }) => showDataset(ctx.store(), dataset, model))
}
