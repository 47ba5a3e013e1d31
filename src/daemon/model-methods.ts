/**
 * IPC methods of the model part: `model.import`, `model.list`, `model.show`,
 * `model.logits` and `generate` (which streams `{ token, text }`).
 */
import { isAbsolute } from 'node:path'
import { importModelWithGenesis } from '../learning/model-genesis.ts'
import { SESSION_PRIORITY_NAMES, isSessionPriorityName } from '../pipeline/priority.ts'
import { InvalidParamsError } from './errors.ts'
import { explainedGenerate } from './generate.ts'
import { objectParams, optionalString, requiredString } from './params.ts'
import type { GenerateFn } from './generate.ts'
import type { IpcServer } from './ipc-server.ts'
import type { ChainStoreApi, BlockSigner } from '../chain/types.ts'
import type { ImportProgress } from '../model/import/importer.ts'
import type { InferenceService } from '../model/inference-service.ts'
import type { GenerateParams, ModelImportResult, NoParams } from '../protocols/ipc.ts'

/** progress notifications of `model.import` are sent at most this often (and at each phase's end) */
export const IMPORT_PROGRESS_INTERVAL_MS = 100

export interface ModelMethodContext {
  ipc: IpcServer
  store(): ChainStoreApi
  signer(): BlockSigner
  inference: InferenceService
  /** called after each block an import stored */
  onImported?(result: ModelImportResult): void
  /** runs `generate` instead of the inference service (the daemon routes it through the mesh) */
  generate?: GenerateFn
}

type Check<T> = (value: unknown, name: string) => T

function optional<T> (check: Check<T>): Check<T | undefined> {
  return (value, name) => value === undefined ? undefined : check(value, name)
}

function finiteNumber (value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidParamsError(`"${name}" must be a finite number`)
  }
  return value
}

function integer (value: unknown, name: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new InvalidParamsError(`"${name}" must be an integer`)
  }
  return value as number
}

function tokenIds (value: unknown, name: string): number[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every(v => Number.isSafeInteger(v) && v >= 0)) {
    throw new InvalidParamsError(`"${name}" must be a non-empty list of token ids (integers >= 0)`)
  }
  return value
}

function priorityName (value: unknown, name: string): NonNullable<GenerateParams['priority']> {
  if (!isSessionPriorityName(value)) {
    throw new InvalidParamsError(`"${name}" must be one of ${SESSION_PRIORITY_NAMES.join(', ')}`)
  }
  return value
}

function stringList (value: unknown, name: string): string[] {
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) {
    throw new InvalidParamsError(`"${name}" must be a list of strings`)
  }
  return value
}

function chatParam (value: unknown, name: string): GenerateParams['chat'] {
  if (typeof value === 'string') {
    return value
  }
  const roles = ['system', 'user', 'assistant', 'tool']
  if (!Array.isArray(value) || value.length === 0 || !value.every(m => m != null && typeof m === 'object' && roles.includes(m.role) && typeof m.content === 'string')) {
    throw new InvalidParamsError(`"${name}" must be a string or a list of { role: ${roles.join('|')}, content: string }`)
  }
  return value.map(m => ({ role: m.role, content: m.content }))
}

/** a version id: hex, 8 to 64 characters (a unique prefix of one of the model's versions) */
function versionId (value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{8,64}$/.test(value)) {
    throw new InvalidParamsError(`"${name}" must be a version id: 64 hex characters or a unique prefix of at least 8`)
  }
  return value.toLowerCase()
}

function absolutePath (value: unknown, name: string): string {
  const path = requiredString(value, name)
  if (!isAbsolute(path)) {
    throw new InvalidParamsError(`"${name}" must be an absolute path (the daemon's working directory is not the caller's)`)
  }
  return path
}

const importParams = objectParams<{ dir: string, tokenizer: string | undefined, name: string | undefined }>({
  dir: absolutePath,
  tokenizer: optional(absolutePath),
  name: optionalString
})

const generateParams = objectParams<{ [K in keyof Required<GenerateParams>]: GenerateParams[K] }>({
  model: requiredString,
  prompt: optional(requiredString),
  chat: optional(chatParam),
  promptIds: optional(tokenIds),
  maxNewTokens: optional(integer),
  temperature: optional(finiteNumber),
  topK: optional(integer),
  topP: optional(finiteNumber),
  repetitionPenalty: optional(finiteNumber),
  seed: optional(integer),
  stop: optional(stringList),
  backend: optionalString,
  priority: optional(priorityName),
  draft: optional(requiredString),
  speculate: optional(integer),
  version: optional(versionId)
})

const logitsParams = objectParams<{ model: string, ids: number[], backend: string | undefined, version: string | undefined }>({
  model: requiredString,
  ids: tokenIds,
  backend: optionalString,
  version: optional(versionId)
})

const modelParams = objectParams<{ model: string, version: string | undefined }>({ model: requiredString, version: optional(versionId) })

export function registerModelMethods (ctx: ModelMethodContext): void {
  const { ipc, inference } = ctx

  ipc.register('model.import', importParams, async (params, context) => {
    let last = 0
    let pending: Promise<void> = Promise.resolve()
    const onProgress = (p: ImportProgress): void => {
      const now = Date.now()
      if (now - last < IMPORT_PROGRESS_INTERVAL_MS && p.done < p.total) {
        return
      }
      last = now
      pending = pending.then(async () => context.notify({ phase: p.phase, done: p.done, total: p.total })).catch(() => {})
    }
    // the manifest and layers, then the genesis Params block (the importer is the first validator)
    const result = await importModelWithGenesis({
      store: ctx.store(),
      signer: ctx.signer(),
      dir: params.dir,
      tokenizer: params.tokenizer,
      name: params.name,
      signal: context.signal,
      onProgress
    })
    await pending
    ctx.onImported?.(result)
    return result
  })

  ipc.register('model.list', objectParams<NoParams>({}), async () => ({ models: await inference.list() }))
  ipc.register('model.show', modelParams, async ({ model, version }) => inference.show(model, version))

  ipc.register('model.logits', logitsParams, async (params) => inference.logitsResult(params.model, params.ids, params.backend, params.version))

  const generate = explainedGenerate(ctx.generate ?? (async (...args) => inference.generate(...args)), ctx.store)
  ipc.register('generate', generateParams, async (params, context) => generate(params, async t => context.notify({ token: t.token, text: t.text }), context.signal))
}
