import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { writeDemoCheckpoint } from '../../src/model/demo-checkpoint.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { SafetensorsCheckpoint } from '../../src/model/safetensors/checkpoint.ts'
import { ChatTokenizer } from '../../src/model/tokenizer.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { loadFixture, sourceOf } from './fixtures.ts'
import type { Fixture } from './fixtures.ts'
import type { GeneratedToken, GenerationResult } from '../../src/model/generation/generate.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

async function collect (it: AsyncGenerator<GeneratedToken, GenerationResult>): Promise<{ yielded: GeneratedToken[], result: GenerationResult }> {
  const yielded: GeneratedToken[] = []
  for (;;) {
    const next = await it.next()
    if (next.done === true) {
      return { yielded, result: next.value }
    }
    yielded.push(next.value)
  }
}

describe('model/generate on the reference fixture', () => {
  let fixture: Fixture
  let model: LayerRange

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: fixture.config.numLayers, embedding: true, head: true })
  })

  after(() => {
    model?.dispose()
  })

  it('greedy generation streams the reference tokens', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const { yielded, result } = await collect(generate(model, prompt, { maxNewTokens: 16 }))
    expect(yielded.map(t => t.id)).to.deep.equal(tokens)
    expect(yielded.map(t => t.index)).to.deep.equal(tokens.map((_, i) => i))
    expect(result.tokens).to.deep.equal(tokens)
    expect(result.finishReason).to.equal('length')
  })

  it('stops on an EOS id without yielding it', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const { result } = await collect(generate(model, prompt, { maxNewTokens: 16, eosTokenIds: [tokens[4]] }))
    expect(result.tokens).to.deep.equal(tokens.slice(0, 4))
    expect(result.finishReason).to.equal('eos')
  })

  it('seeded sampling is reproducible', async () => {
    const run = async (seed: number): Promise<number[]> => (await collect(generate(model, [1, 2, 3], { maxNewTokens: 12, sampling: { temperature: 1.5, topK: 40, seed } }))).result.tokens
    expect(await run(9)).to.deep.equal(await run(9))
    expect(await run(9)).to.not.deep.equal(await run(10))
  })

  it('stops on abort and when the consumer breaks, disposing the session', async () => {
    const controller = new AbortController()
    const it = generate(model, [5, 6], { maxNewTokens: 50, signal: controller.signal })
    await it.next()
    await it.next()
    controller.abort()
    const { yielded, result } = await collect(it)
    expect(yielded).to.have.length(0)
    expect(result.finishReason).to.equal('aborted')
    expect(result.tokens).to.have.length(2)
    let n = 0
    for await (const token of generate(model, [5, 6], { maxNewTokens: 50 })) {
      expect(token.index).to.equal(n)
      if (++n === 3) {
        break
      }
    }
    expect(n).to.equal(3)
  })

  it('rejects bad options', async () => {
    await generate(model, [], {}).next().then(() => { throw new Error('ran') }, err => { expect(err).to.have.property('code', ModelErrorCode.BAD_OPTIONS) })
    await generate(model, [1], { stopStrings: ['x'] }).next().then(() => { throw new Error('ran') }, err => { expect(err).to.have.property('code', ModelErrorCode.BAD_OPTIONS) })
  })
})

describe('model/demo checkpoint + real tokenizer', () => {
  let dir: string
  let model: LayerRange
  let tok: ChatTokenizer
  let tensors: Map<string, RawTensor>

  before(async () => {
    await selectBackend('wasm')
    dir = await mkdtemp(join(tmpdir(), 'blyd-demo-'))
    await writeDemoCheckpoint(join(dir, 'a'), { seed: 3 })
    const ck = await SafetensorsCheckpoint.open(join(dir, 'a'))
    tensors = new Map()
    for (const name of ck.names()) {
      tensors.set(name, await ck.read(name))
    }
    await ck.close()
    const raw = JSON.parse(await readFile(join(dir, 'a', 'config.json'), 'utf8'))
    const { parseQwen3Config } = await import('../../src/model/qwen3/config.ts')
    const config = parseQwen3Config(raw)
    model = await LayerRange.load(config, new MapWeightSource(tensors), { start: 0, end: config.numLayers, embedding: true, head: true })
    tok = ChatTokenizer.fromJson(await readFile(join(dir, 'a', 'tokenizer.json'), 'utf8'), await readFile(join(dir, 'a', 'tokenizer_config.json'), 'utf8'))
  })

  after(async () => {
    model?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  it('is labelled random, deterministic and in Hugging Face layout', async () => {
    const raw = JSON.parse(await readFile(join(dir, 'a', 'config.json'), 'utf8'))
    expect(raw.blyd_demo.random_weights).to.equal(true)
    expect(raw.model_type).to.equal('qwen3')
    expect(raw.tie_word_embeddings).to.equal(true)
    expect(await readFile(join(dir, 'a', 'README.md'), 'utf8')).to.match(/RANDOM WEIGHTS/)
    expect([...tensors.keys()]).to.not.include('lm_head.weight')
    expect(tensors.get('model.embed_tokens.weight')?.dtype).to.equal('BF16')
    await writeDemoCheckpoint(join(dir, 'b'), { seed: 3 })
    await writeDemoCheckpoint(join(dir, 'c'), { seed: 4 })
    const a = await readFile(join(dir, 'a', 'model.safetensors'))
    expect(a.equals(await readFile(join(dir, 'b', 'model.safetensors')))).to.equal(true)
    expect(a.equals(await readFile(join(dir, 'c', 'model.safetensors')))).to.equal(false)
    await writeDemoCheckpoint(join(dir, 'd'), { vocab: 1000 }).then(() => { throw new Error('wrote') }, err => { expect(err).to.have.property('code', ModelErrorCode.BAD_OPTIONS) })
  })

  it('the tied head in one shard equals a separate head shard', async () => {
    const config = model.config
    const headOnly = await LayerRange.load(config, new MapWeightSource(tensors), { start: config.numLayers, end: config.numLayers, head: true })
    try {
      const s = model.createSession()
      const x = model.embed([9707, 11, 1879])
      const h = model.forward(s, x)
      const a = model.logits(h)
      const b = headOnly.logits(h)
      const [da, db] = [await a.data(), await b.data()]
      let max = 0
      for (let i = 0; i < da.length; i++) {
        max = Math.max(max, Math.abs(da[i] - db[i]))
      }
      expect(max).to.be.below(1e-5)
      for (const t of [x, h, a, b]) {
        t.dispose()
      }
      s.dispose()
    } finally {
      headOnly.dispose()
    }
  })

  it('streams text and stops before a stop string', async () => {
    const prompt = tok.encodeChat([{ role: 'user', content: 'Hello' }])
    const decode = (ids: number[]): string => tok.decode(ids)
    const opts = { maxNewTokens: 24, decode, sampling: { temperature: 1, seed: 5 } }
    const free = await collect(generate(model, prompt, opts))
    expect(free.yielded.map(t => t.text).join('') + free.result.tail).to.equal(free.result.text)
    expect(free.result.text).to.equal(tok.decode(free.result.tokens))
    // pick a stop string from the middle of the free run's text: the same seed must stop right before it
    const text = free.result.text
    const at = Math.floor(text.length / 2)
    const stop = text.slice(at, at + 3)
    expect(stop.length).to.be.above(0)
    const stopped = await collect(generate(model, prompt, { ...opts, stopStrings: [stop] }))
    expect(stopped.result.finishReason).to.equal('stop')
    expect(stopped.result.text).to.equal(text.slice(0, text.indexOf(stop)))
    expect(stopped.yielded.map(t => t.text).join('') + stopped.result.tail).to.equal(stopped.result.text)
    expect(stopped.yielded.map(t => t.text).join('')).to.not.include(stop)
  })
})
