/**
 * The OpenAI-compatible routes (protocols/http-api.md): `GET /v1/models`
 * (and `/v1/models/{model}`), `POST /v1/chat/completions`,
 * `POST /v1/completions`. A completion runs
 * through the daemon's one `generate` (daemon/generate.ts: local or through
 * the mesh, counted in the metrics), exactly as `blyd generate` on this
 * daemon would run it.
 *
 * Streaming (`stream: true`): server-sent events, `data: {chunk}` per piece
 * of text, a last chunk with the finish reason (and, with
 * stream_options.include_usage, one with the usage), then `data: [DONE]`.
 * The event stream starts with the first generated token, so a request that
 * fails before (an unknown model, bad options, no route) gets its HTTP
 * status; a failure after is sent as a last `data: {"error": ...}` event.
 * Text held back while it may begin a stop string is sent when it is known
 * not to; the streamed pieces add up to the non-streamed answer's text.
 * A client that goes away stops its generation at the next token.
 */
import { randomBytes } from 'node:crypto'
import { BlydError } from '../../protocols/errors.ts'
import { DaemonErrorCode } from '../errors.ts'
import { sendJson } from './http-api.ts'
import { listModels, resolveModel } from './model-catalog.ts'
import { chatCompletionRequest, completionRequest } from './openai-request.ts'
import { SseStream } from './sse.ts'
import type { GenerateFn } from '../generate.ts'
import type { HttpApi } from './http-api.ts'
import type { CatalogModel } from './model-catalog.ts'
import type { OpenAiGeneration } from './openai-request.ts'
import type { HttpRouteContext } from './router.ts'
import type { ChainStoreApi } from '../../chain/types.ts'
import type { GenerateResult, ModelSummaryJson } from '../../protocols/ipc.ts'
import type { BlydCompletionExtras, OpenAiFinishReason, OpenAiModelJson, OpenAiUsageJson } from '../../protocols/openai.ts'

export interface OpenAiRoutesContext {
  store(): ChainStoreApi
  /** the models' storage state and live version (`model.list`) */
  models(): Promise<ModelSummaryJson[]>
  /** the daemon's generate (IPC `generate` runs the same) */
  generate: GenerateFn
}

type Kind = 'chat' | 'text'

/** `GET /v1/models/{model}`: one model by id, id prefix or name */
const MODELS_PATH = '/v1/models/'

function finishReason (blyd: string): OpenAiFinishReason {
  return blyd === 'length' ? 'length' : 'stop'
}

function usageOf (result: GenerateResult): OpenAiUsageJson {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.tokens.length, total_tokens: result.promptTokens + result.tokens.length }
}

function extrasOf (result: GenerateResult): BlydCompletionExtras {
  return {
    tokens: result.tokens,
    ...(result.via != null ? { via: result.via } : {}),
    ...(result.route != null ? { route: result.route.map(h => ({ peerId: h.peerId, start: h.start, end: h.end, self: h.self })) } : {}),
    finishReason: result.finishReason
  }
}

/** OpenAI's system_fingerprint: the weights version the tokens were computed with, when the node reads versions */
function fingerprintOf (result: GenerateResult): { system_fingerprint?: string } {
  return result.version != null ? { system_fingerprint: result.version } : {}
}

/** A generation stopped by the listener stopping (a client that went away reads nothing). */
function stoppedError (signal: AbortSignal): BlydError {
  return new BlydError(DaemonErrorCode.STOPPING, `the generation was stopped: ${String((signal.reason as Error)?.message ?? signal.reason)}`)
}

async function complete (ctx: OpenAiRoutesContext, http: HttpRouteContext, kind: Kind, request: OpenAiGeneration): Promise<void> {
  const { signal } = http
  const model = await resolveModel(ctx.store(), request.model)
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`
  const created = Math.floor(Date.now() / 1000)
  const params = { model: model.id, ...request.params }
  if (!request.stream) {
    const result = await ctx.generate(params, undefined, signal)
    if (signal.aborted) {
      throw stoppedError(signal)
    }
    const finish = finishReason(result.finishReason)
    const head = { id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model: model.id, ...fingerprintOf(result) }
    const body = kind === 'chat'
      ? { ...head, choices: [{ index: 0, message: { role: 'assistant', content: result.text }, logprobs: null, finish_reason: finish }], usage: usageOf(result), blyd: extrasOf(result) }
      : { ...head, choices: [{ index: 0, text: result.text, logprobs: null, finish_reason: finish }], usage: usageOf(result), blyd: extrasOf(result) }
    sendJson(http.res, 200, body)
    return
  }

  const sse = new SseStream(http.res)
  const usageField = request.includeUsage ? { usage: null } : {}
  const chunk = (text: string | undefined, finish: OpenAiFinishReason | null, role = false): unknown => kind === 'chat'
    ? { id, object: 'chat.completion.chunk', created, model: model.id, choices: [{ index: 0, delta: { ...(role ? { role: 'assistant' } : {}), ...(text != null ? { content: text } : {}) }, logprobs: null, finish_reason: finish }], ...usageField }
    : { id, object: 'text_completion', created, model: model.id, choices: [{ index: 0, text: text ?? '', logprobs: null, finish_reason: finish }], ...usageField }
  const open = async (): Promise<void> => {
    if (!sse.started) {
      sse.start()
      if (kind === 'chat') {
        await sse.send(chunk('', null, true))
      }
    }
  }
  let streamed = ''
  const result = await ctx.generate(params, async t => {
    await open()
    if (t.text != null && t.text !== '') {
      streamed += t.text
      await sse.send(chunk(t.text, null))
    }
  }, signal)
  if (signal.aborted) {
    throw stoppedError(signal)
  }
  await open()
  // text held back at the end (a possible stop string that never came)
  const rest = result.text.startsWith(streamed) ? result.text.slice(streamed.length) : ''
  if (rest !== '') {
    await sse.send(chunk(rest, null))
  }
  await sse.send(chunk(kind === 'chat' ? undefined : '', finishReason(result.finishReason)))
  if (request.includeUsage) {
    await sse.send({ id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: model.id, choices: [], usage: usageOf(result) })
  }
  await sse.send('[DONE]')
  sse.end()
}

/** The models as `GET /v1/models` lists them: the catalog's with their storage state and live version. */
async function modelsJson (ctx: OpenAiRoutesContext, models: CatalogModel[]): Promise<OpenAiModelJson[]> {
  const byId = new Map((await ctx.models()).map(s => [s.id, s]))
  return models.map(m => {
    const s = byId.get(m.id)
    return {
      id: m.id,
      object: 'model',
      created: m.created,
      owned_by: m.author,
      blyd: { name: m.name, ...(s?.version != null ? { version: s.version } : {}), complete: s?.complete ?? false }
    }
  })
}

export function registerOpenAiRoutes (api: HttpApi, ctx: OpenAiRoutesContext): void {
  api.route({
    method: 'GET',
    path: '/v1/models',
    handler: async (http) => {
      sendJson(http.res, 200, { object: 'list', data: await modelsJson(ctx, await listModels(ctx.store())) })
    }
  })
  api.route({
    method: 'GET',
    path: `${MODELS_PATH}*`,
    handler: async (http) => {
      const raw = http.url.pathname.slice(MODELS_PATH.length)
      let name: string
      try {
        name = decodeURIComponent(raw)
      } catch {
        name = raw
      }
      const model = await resolveModel(ctx.store(), name)
      sendJson(http.res, 200, (await modelsJson(ctx, [model]))[0])
    }
  })
  api.route({
    method: 'POST',
    path: '/v1/chat/completions',
    generation: true,
    handler: async (http) => { await complete(ctx, http, 'chat', chatCompletionRequest(await http.readJson())) }
  })
  api.route({
    method: 'POST',
    path: '/v1/completions',
    generation: true,
    handler: async (http) => { await complete(ctx, http, 'text', completionRequest(await http.readJson())) }
  })
}
