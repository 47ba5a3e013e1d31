/**
 * The OpenAI-compatible HTTP API of one real daemon (a child process on
 * 127.0.0.1), driven with the official `openai` client: two models on chain
 * (the demo checkpoint with the real Qwen3 tokenizer, the tokenizer-less
 * tiny fixture). Every answer is checked against the same request made
 * over IPC `generate` (what `blyd generate` sends): greedy and seeded
 * sampling give the same tokens and text, streamed or not. Bad requests are
 * answered in OpenAI's error shape with their HTTP status, and the daemon
 * serves the next request. /metrics is valid Prometheus text whose counters
 * follow a generation.
 */
import { readFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import OpenAI from 'openai'
import { ipcRequest, makeTempDir, pollUntil, removeDir, runCli } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { ARTIFACTS_DIR, launchChromium } from './browser.ts'
import { importModel, openaiClient, sampleValue, scrape, startHttpNode, writeDemo } from './helpers.ts'
import type { HttpNode } from './helpers.ts'
import type { Expected } from '../model/fixtures.ts'

const KEY = 'sk-test-0123456789abcdef'
/** small enough for a test to pass it with a long prompt */
const MAX_BODY_BYTES = 65_536

interface SseRead {
  status: number
  contentType: string | null
  events: string[]
}

/** POST `body` with stream: true and read the raw event stream (the client hides `[DONE]`). */
async function rawStream (url: string, path: string, body: unknown): Promise<SseRead> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  const events = text.split('\n\n').filter(e => e !== '').map(e => {
    expect(e, 'each event is one data line').to.match(/^data: [^\n]*$/)
    return e.slice('data: '.length)
  })
  return { status: res.status, contentType: res.headers.get('content-type'), events }
}

/** POST `body` in 1 KiB chunks (Transfer-Encoding: chunked, no Content-Length); the answer, which may come before the body is sent. */
async function chunkedPost (url: string, path: string, body: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', (s: string) => { text += s }).on('end', () => { resolve({ status: res.statusCode ?? 0, body: text }) })
    })
    // the server may close its side once it answered: what is still being sent then fails, the answer stands
    req.on('error', reject)
    let at = 0
    const next = (): void => {
      while (at < body.length) {
        const piece = body.slice(at, at + 1024)
        at += 1024
        if (!req.write(piece)) {
          req.once('drain', next)
          return
        }
      }
      req.end()
    }
    next()
  })
}

/** The error `p` rejects with, as the client's APIError. */
async function apiError (p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(OpenAI.APIError)
    return err as InstanceType<typeof OpenAI.APIError>
  }
  throw new Error('expected the request to fail')
}

/** A raw request's answer: status and JSON body, checked to be OpenAI's error shape. */
async function rawError (url: string, path: string, init: RequestInit): Promise<{ status: number, error: { message: string, type: string, param: string | null, code: string | null } }> {
  const res = await fetch(`${url}${path}`, init)
  const body = await res.json() as any
  expect(Object.keys(body)).to.deep.equal(['error'])
  expect(Object.keys(body.error).sort()).to.deep.equal(['code', 'message', 'param', 'type'])
  expect(body.error.message).to.be.a('string').that.is.not.empty()
  return { status: res.status, error: body.error }
}

describe('http: the OpenAI-compatible API of one daemon', function () {
  this.timeout(120_000)
  let root: string
  let node: HttpNode
  let client: OpenAI
  let demo: string
  let tiny: string
  let expected: Expected

  async function ipcGenerate (params: Record<string, unknown>): Promise<any> {
    return ipcRequest(node.daemon.socketPath, 'generate', params)
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
    let checkpoint: string
    [node, checkpoint] = await Promise.all([
      startHttpNode(root, 'n1', ['--http-api-key', KEY, '--http-max-body-bytes', String(MAX_BODY_BYTES), '--http-max-concurrent', '1']),
      writeDemo(root)
    ])
    demo = await importModel(node, checkpoint, 'demo')
    tiny = await importModel(node, fixtureDir('untied-f32'))
    client = openaiClient(node.url, KEY)
  })

  after(async () => {
    await node?.daemon.kill()
    await removeDir(root)
  })

  it('blyd status shows the listener; GET /v1/models lists the models on chain, one by id, prefix or name', async () => {
    const [text, status, list] = await Promise.all([
      runCli(['status', '--data-dir', node.dir]),
      ipcRequest(node.daemon.socketPath, 'status'),
      client.models.list()
    ])
    expect(text.stdout).to.match(new RegExp(`^http +${node.url} \\(bearer key required\\)$`, 'm'))
    expect(status.http).to.include({ url: node.url, keyRequired: true })
    expect(status.http.routes).to.include.members(['GET /v1/models', 'POST /v1/chat/completions', 'POST /v1/completions', 'GET /metrics'])

    const models = list.data.map((m: any) => ({ id: m.id, object: m.object, name: m.blyd.name, complete: m.blyd.complete }))
    expect(models).to.have.deep.members([
      { id: demo, object: 'model', name: 'demo', complete: true },
      { id: tiny, object: 'model', name: 'untied-f32', complete: true }
    ])
    for (const m of list.data) {
      expect(m.created).to.be.a('number')
      expect(m.owned_by).to.match(/^[0-9a-f]{64}$/)
      // the live weights version, as model list gives it
      expect((m as any).blyd.version).to.match(/^[0-9a-f]{64}$/)
    }
    for (const name of [demo, demo.slice(0, 10), 'demo']) {
      expect((await client.models.retrieve(name)).id).to.equal(demo)
    }
  })

  it('chat completion: the Qwen3 chat template, greedy tokens and text equal IPC generate --chat, usage counted; by model name too', async () => {
    const messages = [{ role: 'system' as const, content: 'You are terse.' }, { role: 'user' as const, content: 'Hello, who are you?' }]
    const reference = await ipcGenerate({ model: demo, chat: messages, maxNewTokens: 8, temperature: 0 })
    for (const model of [demo, 'demo']) {
      const res = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 })
      expect(res.object).to.equal('chat.completion')
      expect(res.id).to.match(/^chatcmpl-/)
      expect(res.model).to.equal(demo)
      expect(res.choices).to.have.length(1)
      expect(res.choices[0].message).to.include({ role: 'assistant', content: reference.text })
      expect(res.choices[0].finish_reason).to.equal(reference.finishReason === 'length' ? 'length' : 'stop')
      expect((res as any).blyd.tokens).to.deep.equal(reference.tokens)
      expect((res as any).blyd.via).to.equal('local')
      expect(res.system_fingerprint, 'the weights version').to.equal(reference.version)
      expect(res.usage).to.deep.equal({ prompt_tokens: reference.promptTokens, completion_tokens: reference.tokens.length, total_tokens: reference.promptTokens + reference.tokens.length })
    }
    // max_completion_tokens is the newer name of max_tokens
    const newer = await client.chat.completions.create({ model: demo, messages, max_completion_tokens: 3, temperature: 0 })
    expect((newer as any).blyd.tokens).to.deep.equal(reference.tokens.slice(0, 3))
  })

  it('chat completion streamed: SSE chunks add up to the same text, the finish reason and the usage last, then data: [DONE]', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }]
    const reference = await ipcGenerate({ model: demo, chat: messages, maxNewTokens: 10, temperature: 0 })
    const stream = await client.chat.completions.create({ model: demo, messages, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } })
    let text = ''
    const chunks: any[] = []
    for await (const chunk of stream) {
      chunks.push(chunk)
      text += chunk.choices[0]?.delta?.content ?? ''
    }
    expect(text).to.equal(reference.text)
    expect(chunks[0].choices[0].delta.role).to.equal('assistant')
    expect(chunks.every(c => c.object === 'chat.completion.chunk' && c.id === chunks[0].id && c.model === demo)).to.equal(true)
    const finish = chunks.filter(c => c.choices[0]?.finish_reason != null)
    expect(finish).to.have.length(1)
    expect(finish[0].choices[0].finish_reason).to.equal('length')
    const last = chunks[chunks.length - 1]
    expect(last.choices).to.deep.equal([])
    expect(last.usage).to.deep.equal({ prompt_tokens: reference.promptTokens, completion_tokens: 10, total_tokens: reference.promptTokens + 10 })

    // on the wire: text/event-stream, data: lines, data: [DONE] last
    const raw = await rawStream(node.url, '/v1/chat/completions', { model: demo, messages, max_tokens: 4, temperature: 0, stream: true })
    expect(raw.status).to.equal(200)
    expect(raw.contentType).to.match(/^text\/event-stream/)
    expect(raw.events[raw.events.length - 1]).to.equal('[DONE]')
    const parsed = raw.events.slice(0, -1).map(e => JSON.parse(e))
    expect(parsed.map(c => c.choices[0].delta.content ?? '').join('')).to.equal((await ipcGenerate({ model: demo, chat: messages, maxNewTokens: 4, temperature: 0 })).text)
    expect(parsed.every(c => !('usage' in c))).to.equal(true)
  })

  it('completion: a text prompt; stop cuts the output before the stop string; temperature, top_p and seed sample as generate does; streamed the same', async () => {
    const prompt = 'The weather today is'
    const free = await ipcGenerate({ model: demo, prompt, maxNewTokens: 12, temperature: 0 })
    const res = await client.completions.create({ model: demo, prompt, max_tokens: 12, temperature: 0 })
    expect(res.object).to.equal('text_completion')
    expect(res.choices[0].text).to.equal(free.text)
    expect((res as any).blyd.tokens).to.deep.equal(free.tokens)
    expect(res.usage).to.deep.equal({ prompt_tokens: free.promptTokens, completion_tokens: 12, total_tokens: free.promptTokens + 12 })

    // a stop string taken from inside the free output: the answer ends right before it
    const first = (await ipcGenerate({ model: demo, prompt, maxNewTokens: 1, temperature: 0 })).text as string
    const stop = free.text.slice(first.length + 1, first.length + 4)
    expect(stop.length, `free output ${JSON.stringify(free.text)} is long enough`).to.equal(3)
    const cut = free.text.slice(0, free.text.indexOf(stop))
    for (const given of [stop, ['never-appears', stop]]) {
      const stopped = await client.completions.create({ model: demo, prompt, max_tokens: 12, temperature: 0, stop: given })
      expect(stopped.choices[0].text).to.equal(cut)
      expect(stopped.choices[0].finish_reason).to.equal('stop')
    }
    const viaIpc = await ipcGenerate({ model: demo, prompt, maxNewTokens: 12, temperature: 0, stop: [stop] })
    expect(viaIpc.text).to.equal(cut)

    // seeded sampling: the same tokens as generate with the same seed; another seed, another draw
    const sampling = { temperature: 1.3, top_p: 0.95, seed: 1234 }
    const sampled = await ipcGenerate({ model: demo, prompt, maxNewTokens: 12, temperature: 1.3, topP: 0.95, seed: 1234 })
    const drawn = await client.completions.create({ model: demo, prompt, max_tokens: 12, ...sampling })
    expect((drawn as any).blyd.tokens).to.deep.equal(sampled.tokens)
    const again = await client.completions.create({ model: demo, prompt, max_tokens: 12, ...sampling })
    expect((again as any).blyd.tokens).to.deep.equal(sampled.tokens)
    expect(sampled.tokens).to.not.deep.equal(free.tokens)

    // streamed: the same text, stop included
    const stream = await client.completions.create({ model: demo, prompt, max_tokens: 12, temperature: 0, stop, stream: true })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      expect(chunk.object).to.equal('text_completion')
      text += chunk.choices[0].text
      finish = chunk.choices[0].finish_reason ?? finish
    }
    expect(text).to.equal(cut)
    expect(finish).to.equal('stop')
  })

  it('completion: token ids on the tokenizer-less fixture give the reference greedy tokens', async () => {
    const { prompt, tokens } = expected.greedy
    const res = await client.completions.create({ model: tiny, prompt, max_tokens: tokens.length, temperature: 0 })
    expect((res as any).blyd.tokens).to.deep.equal(tokens)
    expect(res.choices[0].text).to.equal('')
    expect(res.usage).to.deep.equal({ prompt_tokens: prompt.length, completion_tokens: tokens.length, total_tokens: prompt.length + tokens.length })
    // a text prompt on it: the model has no tokenizer (400, blyd's code)
    const err = await apiError(client.completions.create({ model: tiny, prompt: 'hello', max_tokens: 2 }))
    expect(err.status).to.equal(400)
    expect(err.code).to.equal('ERR_MODEL_NO_TOKENIZER')
  })

  it('answers bad requests in OpenAI\'s error shape with their status, and keeps serving', async () => {
    const json = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }
    const stillServing = async (): Promise<void> => {
      const res = await client.completions.create({ model: tiny, prompt: expected.greedy.prompt, max_tokens: 2, temperature: 0 })
      expect((res as any).blyd.tokens).to.deep.equal(expected.greedy.tokens.slice(0, 2))
    }

    // bad JSON
    let r = await rawError(node.url, '/v1/chat/completions', { method: 'POST', headers: json, body: '{"model": "x", "messages": [' })
    expect(r.status).to.equal(400)
    expect(r.error).to.include({ type: 'invalid_request_error', code: 'invalid_json' })
    r = await rawError(node.url, '/v1/completions', { method: 'POST', headers: json, body: '[1, 2]' })
    expect(r.status).to.equal(400)
    await stillServing()

    // unknown model
    let err = await apiError(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }))
    expect(err).to.be.instanceOf(OpenAI.NotFoundError)
    expect(err.status).to.equal(404)
    expect(err.code).to.equal('model_not_found')
    expect(err.param).to.equal('model')
    expect(err.type).to.equal('invalid_request_error')
    expect((await apiError(client.models.retrieve('0'.repeat(64)))).status).to.equal(404)
    // no model named while two are on chain (blyd generate says the same)
    const [cli] = await Promise.all([
      runCli(['generate', '--prompt-ids', '1,2', '--data-dir', node.dir]),
      (async () => {
        r = await rawError(node.url, '/v1/completions', { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'hi' }) })
        expect(r.status).to.equal(400)
        expect(r.error).to.include({ code: 'ambiguous_model', param: 'model' })
      })()
    ])
    expect(cli.code, 'a usage error').to.equal(2)
    expect(cli.stderr).to.include('--model is needed: 2 models are on chain A').and.include(demo).and.include(tiny)
    await stillServing()

    // over-limit body: refused without reading it (413), whatever the route; chunked (no length declared) as soon as it passes the limit
    err = await apiError(client.completions.create({ model: demo, prompt: 'x'.repeat(MAX_BODY_BYTES), max_tokens: 1 }))
    expect(err.status).to.equal(413)
    expect(err.code).to.equal('request_too_large')
    const chunked = await chunkedPost(node.url, '/v1/completions', JSON.stringify({ model: demo, prompt: 'x'.repeat(4 * MAX_BODY_BYTES) }))
    expect(chunked.status).to.equal(413)
    expect(JSON.parse(chunked.body).error.code).to.equal('request_too_large')
    await stillServing()

    // missing key, wrong key, malformed header: 401 before the body is read
    for (const headers of [{ 'content-type': 'application/json' }, { ...json, authorization: 'Bearer sk-wrong' }, { ...json, authorization: KEY }]) {
      r = await rawError(node.url, '/v1/completions', { method: 'POST', headers, body: JSON.stringify({ model: tiny, prompt: [1], max_tokens: 1 }) })
      expect(r.status).to.equal(401)
      expect(r.error).to.include({ code: 'invalid_api_key' })
    }
    err = await apiError(openaiClient(node.url, 'sk-wrong').models.list())
    expect(err).to.be.instanceOf(OpenAI.AuthenticationError)
    r = await rawError(node.url, '/metrics', {})
    expect(r.status).to.equal(401)
    await stillServing()

    // invalid and unsupported fields, unknown routes and methods
    err = await apiError(client.chat.completions.create({ model: demo, messages: [{ role: 'user', content: 'hi' }], temperature: 5 }))
    expect(err.status).to.equal(400)
    expect(err.param).to.equal('temperature')
    err = await apiError(client.chat.completions.create({ model: demo, messages: [{ role: 'user', content: 'hi' }], n: 2 }))
    expect(err.status).to.equal(400)
    expect(err.code).to.equal('unsupported_parameter')
    err = await apiError(client.chat.completions.create({ model: demo, messages: [] }))
    expect(err.param).to.equal('messages')
    r = await rawError(node.url, '/v1/embeddings', { method: 'POST', headers: json, body: '{}' })
    expect(r.status).to.equal(404)
    expect(r.error.code).to.equal('unknown_url')
    r = await rawError(node.url, '/v1/models', { method: 'DELETE', headers: json })
    expect(r.status).to.equal(405)
    await stillServing()
  })

  it('a generation past httpMaxConcurrent is answered 429; a client that goes away stops its generation', async () => {
    const before = await scrape(node.url, KEY)
    const aborted = (s: typeof before): number => sampleValue(s.samples, 'blyd_generations_total', { finish_reason: 'aborted' })
    const controller = new AbortController()
    const stream = await client.completions.create({ model: demo, prompt: 'Once upon a time', max_tokens: 2000, temperature: 0, stream: true }, { signal: controller.signal })
    const it = stream[Symbol.asyncIterator]()
    expect((await it.next()).done).to.equal(false)

    const err = await apiError(client.completions.create({ model: tiny, prompt: [1, 2], max_tokens: 1 }))
    expect(err).to.be.instanceOf(OpenAI.RateLimitError)
    expect(err.status).to.equal(429)
    expect(err.code).to.equal('rate_limit_exceeded')

    controller.abort()
    await it.return?.(undefined)
    const after = await pollUntil(async () => scrape(node.url, KEY), s => aborted(s) > aborted(before) && sampleValue(s.samples, 'blyd_generate_sessions') === 0)
    expect(aborted(after), 'the generation ended as aborted').to.equal(aborted(before) + 1)
    expect(sampleValue(after.samples, 'blyd_generate_tokens_total') - sampleValue(before.samples, 'blyd_generate_tokens_total'), 'far fewer than 2000 tokens were generated').to.be.below(2000)
    expect(sampleValue(after.samples, 'blyd_http_refusals_total', { reason: 'concurrency' })).to.be.at.least(1)
    // the slot is free again
    const res = await client.completions.create({ model: tiny, prompt: [1, 2], max_tokens: 1, temperature: 0 })
    expect(res.usage?.completion_tokens).to.equal(1)
  })

  it('GET /metrics: Prometheus text with the inference, chain, sync, IPC and HTTP series; the counters follow a generation', async () => {
    const before = await scrape(node.url, KEY)
    expect(before.contentType).to.match(/^text\/plain; version=0\.0\.4/)
    for (const name of [
      'blyd_generate_tokens_total', 'blyd_generations_total', 'blyd_generate_sessions', 'blyd_generate_step_seconds', 'blyd_generate_busy_waits_total', 'blyd_generate_failovers_total',
      'blyd_stage_sessions', 'blyd_stage_busy_total', 'blyd_stage_steps_total',
      'blyd_chain_blocks', 'blyd_chain_tips', 'blyd_chain_blocks_created_total', 'blyd_chain_rejections_total',
      'blyd_sync_rounds_total', 'blyd_sync_retries_total', 'blyd_sync_blocks_added_total', 'blyd_gossip_blocks_total', 'blyd_libp2p_connections',
      'blyd_ipc_requests_total', 'blyd_ipc_connections', 'blyd_http_requests_total', 'blyd_http_refusals_total', 'blyd_http_in_flight'
    ]) {
      expect(before.types.has(name), `${name} is exposed`).to.equal(true)
    }
    expect(before.types.get('blyd_generate_step_seconds')).to.equal('histogram')
    expect(sampleValue(before.samples, 'blyd_chain_blocks', { chain: 'A' })).to.be.at.least(2)

    const res = await client.completions.create({ model: demo, prompt: 'Count with me:', max_tokens: 5, temperature: 0 })
    const tokens = res.usage?.completion_tokens ?? 0
    expect(tokens).to.equal(5)
    const after = await scrape(node.url, KEY)
    const grew = (name: string, labels: Record<string, string> = {}): number => sampleValue(after.samples, name, labels) - sampleValue(before.samples, name, labels)
    expect(grew('blyd_generate_tokens_total')).to.equal(tokens)
    expect(grew('blyd_generations_total', { via: 'local', finish_reason: 'length' })).to.equal(1)
    // one step per token, through the whole 2-layer model in this process
    expect(grew('blyd_generate_step_seconds_count', { stage: '0-2' })).to.equal(tokens)
    expect(grew('blyd_generate_step_seconds_bucket', { stage: '0-2', le: '+Inf' })).to.equal(tokens)
    expect(grew('blyd_http_requests_total', { route: '/v1/completions', status: '200' })).to.equal(1)
    expect(sampleValue(after.samples, 'blyd_http_requests_total', { route: '/metrics', status: '200' })).to.be.at.least(1)
    expect(sampleValue(after.samples, 'blyd_http_refusals_total', { reason: 'auth' })).to.be.at.least(1)
    expect(sampleValue(after.samples, 'blyd_http_refusals_total', { reason: 'body' })).to.be.at.least(1)
    // the IPC metrics method serves the same registry
    const viaIpc = (await ipcRequest(node.daemon.socketPath, 'metrics')).text as string
    expect(viaIpc).to.include('blyd_generate_tokens_total')
  })

  it('the dashboard: the page loads without the key and asks for it; the snapshot and its event stream ask for the key; at most 16 streams', async () => {
    const auth = { authorization: `Bearer ${KEY}` }
    // the page and its files need no key, and go out with a policy that allows this origin's script only
    for (const path of ['/', '/dashboard', '/dashboard/dashboard.js', '/dashboard/dashboard.css']) {
      const res = await fetch(`${node.url}${path}`)
      expect(res.status, path).to.equal(200)
      expect(res.headers.get('content-security-policy'), path).to.include("script-src 'self'")
      await res.arrayBuffer()
    }
    for (const path of ['/dashboard/%2e%2e%2fpackage.json', '/dashboard/__proto__', '/dashboard/nope.js']) {
      expect((await rawError(node.url, path, {})).status, path).to.equal(404)
    }
    // the data asks for it
    for (const path of ['/v1/dashboard/snapshot', '/v1/dashboard/events']) {
      const r = await rawError(node.url, path, {})
      expect(r.status, path).to.equal(401)
      expect(r.error.code).to.equal('invalid_api_key')
    }
    const [res, status, chain] = await Promise.all([
      fetch(`${node.url}/v1/dashboard/snapshot`, { headers: auth }),
      ipcRequest(node.daemon.socketPath, 'status'),
      ipcRequest(node.daemon.socketPath, 'chain.info')
    ])
    expect(res.status).to.equal(200)
    const snapshot = await res.json() as any
    expect(snapshot.errors).to.deep.equal({})
    expect(snapshot.node).to.include({ peerId: status.peerId, backend: 'wasm', serving: null })
    expect(snapshot.models.map((m: any) => m.id)).to.have.members([demo, tiny])
    expect(snapshot.chain).to.deep.equal(chain)
    expect(snapshot.swarm).to.deep.equal({ models: [demo, tiny].sort(), spans: [], connected: [] })
    expect(snapshot.proposals).to.deep.equal([])
    expect(snapshot.validators.map((v: any) => v.model)).to.have.members([demo, tiny])
    expect(snapshot.learning.validator.key).to.match(/^[0-9a-f]{64}$/)

    // at most 16 event streams, each starting with the current snapshot; one more is 429 until one closes
    const streams = await Promise.all(Array.from({ length: 16 }, async () => {
      const controller = new AbortController()
      const r = await fetch(`${node.url}/v1/dashboard/events`, { headers: auth, signal: controller.signal })
      expect(r.status).to.equal(200)
      expect(r.headers.get('content-type')).to.match(/^text\/event-stream/)
      const reader = (r.body as ReadableStream<Uint8Array>).getReader()
      let text = ''
      while (!text.includes('\n\n')) {
        text += new TextDecoder().decode((await reader.read()).value)
      }
      expect(text).to.match(/^event: snapshot\nid: \d+\ndata: \{/)
      expect(JSON.parse(text.split('\n')[2].slice('data: '.length)).node.peerId).to.equal(status.peerId)
      return controller
    }))
    const over = await rawError(node.url, '/v1/dashboard/events', { headers: auth })
    expect(over.status).to.equal(429)
    expect(over.error.message).to.include('16 dashboard event streams')
    streams[0].abort()
    const replacement = new AbortController()
    await pollUntil(async () => {
      const r = await fetch(`${node.url}/v1/dashboard/events`, { headers: auth, signal: replacement.signal })
      if (r.status !== 200) {
        await r.arrayBuffer()
      }
      return r.status
    }, s => s === 200, 10_000, 100)
    for (const c of [...streams.slice(1), replacement]) {
      c.abort()
    }

    // in a browser: the page shows the 401 and a key form; with the key, this node
    const browser = await launchChromium()
    try {
      const page = await browser.newPage()
      await page.goto(`${node.url}/`)
      const form = page.locator('#auth')
      await form.waitFor({ state: 'visible', timeout: 20_000 })
      expect(await page.locator('#auth-message').textContent()).to.match(/^401 Unauthorized: no API key given/)
      expect(await page.locator('#status').getAttribute('data-state')).to.equal('auth')
      await page.locator('#auth-key').fill(KEY)
      await page.locator('#auth button[type=submit]').click()
      await page.locator(`section[data-section="node"] [data-field="peer-id"]:text-is("${status.peerId}")`).waitFor({ timeout: 20_000 })
      expect(await form.isHidden()).to.equal(true)
      expect(await page.locator('section[data-section="models"] tr[data-model]').count()).to.equal(2)
      await page.screenshot({ path: join(ARTIFACTS_DIR, 'dashboard-key.png'), fullPage: true })
    } finally {
      await browser.close()
    }
  })

  it('a daemon stopping ends an open stream with an error event, and a dashboard stream, and exits', async () => {
    const res = await fetch(`${node.url}/v1/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: demo, prompt: 'A long story:', max_tokens: 5000, temperature: 0, stream: true }) })
    expect(res.status).to.equal(200)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = decoder.decode((await reader.read()).value, { stream: true })
    expect(text).to.match(/^data: /)
    // a dashboard stream open too: the stop ends it
    const dashboard = await fetch(`${node.url}/v1/dashboard/events`, { headers: { authorization: `Bearer ${KEY}` } })
    expect(dashboard.status).to.equal(200)
    const followed = dashboard.text()
    await ipcRequest(node.daemon.socketPath, 'shutdown')
    expect(await followed).to.match(/^event: snapshot\n/)
    for (let r = await reader.read(); r.done !== true; r = await reader.read()) {
      text += decoder.decode(r.value, { stream: true })
    }
    const events = text.split('\n\n').filter(e => e !== '')
    const last = JSON.parse(events[events.length - 1].slice('data: '.length))
    expect(last.error).to.include({ type: 'server_error', code: 'ERR_STOPPING' })
    expect(await node.daemon.exited).to.deep.equal({ code: 0, signal: null })
  })
})
