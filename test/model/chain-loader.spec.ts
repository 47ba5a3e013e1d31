import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ChainWeightSource, loadLayerRangeFromChain, loadModelManifest, loadUnitTensors, resolveModelId } from '../../src/model/chain-loader.ts'
import { writeDemoCheckpoint } from '../../src/model/demo-checkpoint.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { InferenceService } from '../../src/model/inference-service.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from '../../src/model/qwen3/plan.ts'
import { tf } from '../../src/model/qwen3/tf.ts'
import { openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { fixtureDir, loadFixture, maxAbsDiff } from './fixtures.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { ModelManifest } from '../../src/model/chain-loader.ts'
import type { LayerRange } from '../../src/model/qwen3/layer-range.ts'

const TOL = 1e-4

function idOf (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** the file of chunk 0 of the layer block holding `unit` */
async function chunkFile (store: ChainStore, manifest: ModelManifest, unit: number): Promise<{ file: string, blockId: string }> {
  const [block] = await store.byModelUnit(manifest.id, unit)
  const hex = Buffer.from(block.header.chunkHashes[0]).toString('hex')
  return { file: join(store.path, 'chunks', hex.slice(0, 2), hex), blockId: Buffer.from(block.id).toString('hex') }
}

/** logits of `ids` through stages that each hold part of the model */
async function stagedLogits (stages: LayerRange[], ids: number[]): Promise<number[][]> {
  const sessions = stages.map(s => s.createSession())
  try {
    let x = stages[0].embed(ids)
    for (let i = 0; i < stages.length; i++) {
      const y = stages[i].forward(sessions[i], x)
      x.dispose()
      x = y
    }
    const logits = stages.at(-1)?.logits(x) as tf.Tensor2D
    x.dispose()
    const rows = await logits.array()
    logits.dispose()
    return rows
  } finally {
    sessions.forEach(s => { s.dispose() })
  }
}

describe('model/chain loader', function () {
  this.timeout(60_000)
  let dir: string
  let store: ChainStore

  before(async () => {
    await tf.setBackend('cpu')
  })

  beforeEach(async () => {
    dir = await tempDir('blyd-loader-')
    store = await openStore(join(dir, 'chain'))
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('serves each tensor of its unit range byte for byte, and nothing outside it', async () => {
    const fixture = await loadFixture('untied-bf16-sharded')
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixture.dir })
    const manifest = await loadModelManifest(store, idOf(modelId))
    const source = new ChainWeightSource({ store, manifest, start: 2, end: 4 })
    for (const name of ['model.layers.1.self_attn.q_proj.weight', 'model.layers.2.mlp.down_proj.weight', 'model.layers.1.input_layernorm.weight']) {
      const t = await source.get(name)
      expect(t?.dtype).to.equal('BF16')
      expect(Buffer.from(t?.data ?? []).equals(Buffer.from(fixture.tensors.get(name)?.data ?? []))).to.equal(true, name)
    }
    for (const name of [EMBED_TOKENS, 'model.layers.0.mlp.up_proj.weight', 'model.layers.3.mlp.up_proj.weight', FINAL_NORM, LM_HEAD, 'no.such.tensor']) {
      expect(await source.get(name), name).to.equal(undefined)
    }
  })

  it('stages loaded from the chain compose to the reference logits', async () => {
    const fixture = await loadFixture('untied-f32')
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixture.dir })
    const manifest = await loadModelManifest(store, idOf(modelId))
    const first = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 1, embedding: true })
    const middle = await loadLayerRangeFromChain(store, manifest, { start: 1, end: 3 })
    const last = await loadLayerRangeFromChain(store, manifest, { start: 3, end: 4, head: true })
    try {
      const rows = await stagedLogits([first, middle, last], fixture.expected.sequence)
      rows.forEach((row, i) => { expect(maxAbsDiff(row, fixture.expected.full_logits[i]), `position ${i}`).to.be.below(TOL) })
    } finally {
      [first, middle, last].forEach(s => { s.dispose() })
    }
  })

  it('a head stage of a tied model reads embed_tokens from unit 0', async () => {
    const ck = join(dir, 'tied')
    const config = await writeDemoCheckpoint(ck, { layers: 2, vocab: 300, tokenizer: false, tieWordEmbeddings: true, dtype: 'F32', seed: 5 })
    const { modelId } = await importModel({ store, signer: signer(1), dir: ck })
    const manifest = await loadModelManifest(store, idOf(modelId))
    expect(manifest.units.at(-1)?.tensors.map(t => t.name)).to.deep.equal([FINAL_NORM])
    const source = new ChainWeightSource({ store, manifest, ...ChainWeightSource.unitRange(config.numLayers, { start: 1, end: 2, head: true }) })
    expect(await source.get(EMBED_TOKENS)).to.not.equal(undefined)
    expect(await source.get('model.layers.0.mlp.up_proj.weight')).to.equal(undefined)
    const whole = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 2, embedding: true, head: true })
    const front = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 1, embedding: true })
    const back = await loadLayerRangeFromChain(store, manifest, { start: 1, end: 2, head: true })
    try {
      const ids = [3, 99, 250, 7]
      const full = await stagedLogits([whole], ids)
      const split = await stagedLogits([front, back], ids)
      full.forEach((row, i) => { expect(maxAbsDiff(row, split[i])).to.be.below(1e-5) })
    } finally {
      [whole, front, back].forEach(s => { s.dispose() })
    }
  })

  it('a corrupt chunk fails the load naming the block and the unit; nothing falls back', async () => {
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixtureDir('untied-f32') })
    const manifest = await loadModelManifest(store, idOf(modelId))
    const { file, blockId } = await chunkFile(store, manifest, 2)
    const bytes = await readFile(file)
    bytes[bytes.length >> 1] ^= 0x01
    await writeFile(file, bytes)
    const err = await loadUnitTensors(store, manifest, 2).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.BLOCK_CORRUPT)
    expect(err.message).to.include(blockId).and.include('unit 2')
    const load = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 4, embedding: true, head: true }).then(() => undefined, (e: any) => e)
    expect(load?.code).to.equal(ModelErrorCode.BLOCK_CORRUPT)
    expect(load.message).to.include(blockId)
    // the other units still load
    expect((await loadUnitTensors(store, manifest, 3)).size).to.equal(11)
  })

  it('a missing chunk file or layer block is an error naming what is missing', async () => {
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixtureDir('untied-f32') })
    const manifest = await loadModelManifest(store, idOf(modelId))
    const { file, blockId } = await chunkFile(store, manifest, 5)
    await rm(file)
    const err = await loadUnitTensors(store, manifest, 5).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.BLOCK_MISSING)
    expect(err.message).to.include(blockId).and.include('unit 5')

    // a manifest whose layer blocks were never stored (another store, manifest only)
    const other = await openStore(join(dir, 'other'))
    try {
      const encoded = await store.getEncoded(manifest.id) as Uint8Array
      const chunks: Uint8Array[] = []
      for await (const c of store.readPayload(manifest.id)) {
        chunks.push(c)
      }
      const payload = Buffer.concat(chunks)
      expect(await other.addBlock(encoded, payload)).to.equal('added')
      const copy = await loadModelManifest(other, manifest.id)
      const missing = await loadUnitTensors(other, copy, 0).then(() => undefined, (e: any) => e)
      expect(missing?.code).to.equal(ModelErrorCode.BLOCK_MISSING)
      expect(missing.message).to.include('unit 0').and.include(modelId)
    } finally {
      await other.stop()
    }
  })

  it('an interrupted import: loads needing a missing unit fail at once naming every missing unit; others load', async () => {
    const controller = new AbortController()
    const dirOf = fixtureDir('untied-f32')
    // stop the real importer in unit 2's payload (units 0 and 1 written: 35% of the bytes is inside layer 1)
    const aborted = await importModel({
      store,
      signer: signer(1),
      dir: dirOf,
      signal: controller.signal,
      onProgress: p => {
        if (p.phase === 'write' && p.done >= p.total * 0.35) {
          controller.abort()
        }
      }
    }).then(() => undefined, (e: any) => e)
    expect(aborted?.name).to.equal('AbortError')
    const [summary] = await new InferenceService({ store: () => store }).list()
    expect(summary).to.deep.include({ units: 6, unitsStored: 2, complete: false, manifestStored: true, missingUnits: [2, 3, 4, 5] })
    const manifest = await loadModelManifest(store, idOf(summary.id))
    const err = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 4, embedding: true, head: true }).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.MODEL_INCOMPLETE)
    expect(err.message).to.include('4 of 6 units missing (units 2-5: layer 1, layer 2, layer 3, head)')
    // a span that needs only the stored units loads
    const range = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 1, embedding: true })
    await range.close()
    // the ends (embedding + head, no layer) need units 0 and 5 only
    const ends = await loadLayerRangeFromChain(store, manifest, { start: 0, end: 0, embedding: true, head: true }).then(() => undefined, (e: any) => e)
    expect(ends?.code).to.equal(ModelErrorCode.MODEL_INCOMPLETE)
    expect(ends.message).to.include('1 of 6 units missing (unit 5: head)')
    // the head alone needs unit 5
    const head = await loadLayerRangeFromChain(store, manifest, { start: 4, end: 4, head: true }).then(() => undefined, (e: any) => e)
    expect(head?.code).to.equal(ModelErrorCode.MODEL_INCOMPLETE)
    expect(head.message).to.include('1 of 6 units missing (unit 5: head)')
  })

  it('a manifest whose payload is not stored is listed incomplete, its units counted from their blocks', async () => {
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixtureDir('untied-f32') })
    const other = await openStore(join(dir, 'other'))
    try {
      // the manifest's header only (as a sync that has not fetched its payload), units 0..2 whole
      expect(await other.addBlock(await store.getEncoded(idOf(modelId)) as Uint8Array)).to.equal('added')
      for (let unit = 0; unit < 3; unit++) {
        const [block] = await store.byModelUnit(idOf(modelId), unit)
        const chunks: Uint8Array[] = []
        for await (const c of store.readPayload(block.id)) {
          chunks.push(c)
        }
        expect(await other.addBlock(await store.getEncoded(block.id) as Uint8Array, Buffer.concat(chunks))).to.equal('added')
      }
      const [summary] = await new InferenceService({ store: () => other }).list()
      expect(summary).to.deep.include({ id: modelId, units: 6, unitsStored: 3, complete: false, manifestStored: false, missingUnits: [3, 4, 5] })
    } finally {
      await other.stop()
    }
  })

  it('resolves model ids: full hex, a unique prefix of >= 8, and clear errors otherwise', async () => {
    const { modelId } = await importModel({ store, signer: signer(1), dir: fixtureDir('untied-f32') })
    expect(Buffer.from(await resolveModelId(store, modelId.toUpperCase())).toString('hex')).to.equal(modelId)
    expect(Buffer.from(await resolveModelId(store, modelId.slice(0, 8))).toString('hex')).to.equal(modelId)
    for (const bad of [modelId.slice(0, 7), 'xyz12345', '']) {
      const err = await resolveModelId(store, bad).then(() => undefined, (e: any) => e)
      expect(err?.code, bad).to.equal(ModelErrorCode.MODEL_NOT_FOUND)
    }
    const unknown = modelId.startsWith('00') ? 'ff' : '00'
    const err = await resolveModelId(store, unknown.repeat(5)).then(() => undefined, (e: any) => e)
    expect(err?.message).to.include('no model on chain A')
    const notManifest = (await store.byModelUnit(idOf(modelId), 0))[0]
    const typeErr = await loadModelManifest(store, notManifest.id).then(() => undefined, (e: any) => e)
    expect(typeErr?.code).to.equal(ModelErrorCode.MODEL_NOT_FOUND)
    expect(typeErr.message).to.include('not a model manifest')
  })
})

describe('model/inference service', function () {
  this.timeout(60_000)
  let dir: string
  let store: ChainStore
  let service: InferenceService
  let modelId: string

  before(async () => {
    dir = await tempDir('blyd-infer-')
    store = await openStore(join(dir, 'chain'))
    modelId = (await importModel({ store, signer: signer(1), dir: fixtureDir('untied-bf16-sharded') })).modelId
    service = new InferenceService({ store: () => store, backend: 'cpu' })
    await service.start()
  })

  after(async () => {
    await service?.stop()
    await store?.stop()
    await removeDir(dir)
  })

  it('reports the backend it runs and refuses requests that expect another', async () => {
    expect(service.backendStatus()).to.deep.include({ name: 'cpu', preference: 'cpu' })
    const err = await service.logits(modelId, [1, 2], 'wasm').then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.BACKEND_UNAVAILABLE)
    expect(err.message).to.include('cpu backend runs here')
    expect(await service.logits(modelId, [1, 2], 'cpu')).to.have.length(2)
  })

  it('serialises concurrent generations; each matches the reference', async () => {
    const fixture = await loadFixture('untied-bf16-sharded')
    const { prompt, tokens } = fixture.expected.greedy
    const streamed: number[][] = [[], []]
    const results = await Promise.all([0, 1].map(async i => service.generate({ model: modelId, promptIds: prompt, maxNewTokens: tokens.length }, t => { streamed[i].push(t.token) })))
    for (let i = 0; i < 2; i++) {
      expect(results[i].tokens).to.deep.equal(tokens)
      expect(streamed[i]).to.deep.equal(tokens)
      expect(results[i]).to.include({ finishReason: 'length', promptTokens: prompt.length, text: '', backend: 'cpu' })
    }
  })

  it('refuses text on a token-id-only model and bad option mixes', async () => {
    const noText = await service.generate({ model: modelId, prompt: 'hello' }).then(() => undefined, (e: any) => e)
    expect(noText?.code).to.equal(ModelErrorCode.NO_TOKENIZER)
    expect(noText.message).to.include('without a tokenizer')
    const two = await service.generate({ model: modelId, prompt: 'x', promptIds: [1] }).then(() => undefined, (e: any) => e)
    expect(two?.code).to.equal(ModelErrorCode.BAD_OPTIONS)
    const badTemp = await service.generate({ model: modelId, promptIds: [1], temperature: -1 }).then(() => undefined, (e: any) => e)
    expect(badTemp?.code).to.equal(ModelErrorCode.BAD_OPTIONS)
    const badId = await service.logits(modelId, [512]).then(() => undefined, (e: any) => e)
    expect(badId?.code).to.equal(ModelErrorCode.BAD_INPUT)
  })

  it('lists and shows the model with its stored layer blocks', async () => {
    const [summary] = await service.list()
    expect(summary).to.include({ id: modelId, name: 'untied-bf16-sharded', arch: 'qwen3', units: 6, unitsStored: 6, complete: true })
    const details = await service.show(modelId.slice(0, 12))
    expect(details.config).to.include({ layers: 4, hidden: 64, vocab: 512, headDim: 32 })
    expect(details.dtypes).to.deep.equal(['BF16'])
    expect(details.unitBlocks.every(u => u.stored && u.block != null)).to.equal(true)
    expect(details.tokenizer).to.deep.equal({ present: false, chatTemplate: false })
  })
})
