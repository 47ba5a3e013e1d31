import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync, writeSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { IMPORT_TIMESTAMP, LayerField, MANIFEST_FORMAT } from '../../src/model/import/constants.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { parseManifest } from '../../src/model/import/manifest.ts'
import { planUnits } from '../../src/model/qwen3/plan.ts'
import { SafetensorsCheckpoint } from '../../src/model/safetensors/checkpoint.ts'
import { decodeSafetensors } from '../../src/model/safetensors/reader.ts'
import { openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { DAMAGES, damagedCopy } from './checkpoint-damage.ts'
import { FIXTURE_VARIANTS, fixtureDir, loadFixture } from './fixtures.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { ChainStoreApi } from '../../src/chain/types.ts'

async function collect<T> (items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) {
    out.push(item)
  }
  return out
}

async function payloadOf (store: ChainStoreApi, id: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(Buffer.concat(await collect(store.readPayload(id))))
}

async function snapshot (store: ChainStore): Promise<unknown> {
  const hex = (ids: Uint8Array[]): string[] => ids.map(i => Buffer.from(i).toString('hex')).sort()
  return { counts: await store.counts(), tipsA: hex(await store.tips(ChainId.A)), tipsB: hex(await store.tips(ChainId.B)) }
}

describe('model/import into the chain', function () {
  this.timeout(60_000)
  // fields, not loop-captured variables: the cases below are made in loops
  const env = {} as { dir: string, store: ChainStore }

  beforeEach(async () => {
    env.dir = await tempDir('blyd-import-')
    env.store = await openStore(join(env.dir, 'chain'))
  })

  afterEach(async () => {
    await env.store.stop()
    await removeDir(env.dir)
  })

  for (const variant of FIXTURE_VARIANTS) {
    it(`${variant}: a manifest on A, one layer block per unit on B, payloads in the original dtype`, async () => {
      const fixture = await loadFixture(variant)
      const author = signer(1)
      const result = await importModel({ store: env.store, signer: author, dir: fixtureDir(variant) })
      const units = planUnits(fixture.config)
      expect(result).to.include({ blocks: units.length + 1, existing: 0, units: units.length, tokenizer: false, name: variant })
      expect(result.bytesWritten).to.equal(result.bytes)

      const id = Uint8Array.from(Buffer.from(result.modelId, 'hex'))
      const manifestBlock = await env.store.get(id)
      expect(manifestBlock?.header).to.deep.include({ chain: ChainId.A, type: BlockType.ModelManifest, timestamp: IMPORT_TIMESTAMP, parents: [] })
      expect(manifestBlock?.header.fields.get('arch')).to.deep.equal({ kind: 'string', value: 'qwen3' })
      expect(manifestBlock?.header.fields.get('units')).to.deep.equal({ kind: 'uint', value: BigInt(units.length) })
      const manifest = parseManifest(await payloadOf(env.store, id), 'test')
      expect(manifest.format).to.equal(MANIFEST_FORMAT)
      expect(manifest.config).to.deep.equal(fixture.config.raw)
      expect(manifest.tokenizer).to.equal(null)

      for (const unit of units) {
        const blocks = await env.store.byModelUnit(id, unit.unit)
        expect(blocks, `unit ${unit.unit}`).to.have.length(1)
        const block = blocks[0]
        expect(block.header).to.deep.include({ chain: ChainId.B, type: BlockType.Layer, parents: [id] })
        expect(block.header.author).to.deep.equal(author.publicKey)
        expect(block.header.fields.get(LayerField.KIND)).to.deep.equal({ kind: 'string', value: unit.kind })
        const payload = await payloadOf(env.store, block.id)
        const listed = manifest.units[unit.unit]
        expect(createHash('sha256').update(payload).digest('hex')).to.equal(listed.sha256)
        expect(payload.byteLength).to.equal(listed.bytes)
        const decoded = decodeSafetensors(payload).tensors
        expect([...decoded.keys()]).to.deep.equal(unit.tensors.map(t => t.name))
        for (const [name, t] of decoded) {
          const original = fixture.tensors.get(name)
          expect(t.dtype).to.equal(original?.dtype)
          expect(t.shape).to.deep.equal(original?.shape)
          expect(Buffer.from(t.data).equals(Buffer.from(original?.data ?? []))).to.equal(true, name)
        }
      }
    })
  }

  it('importing the same checkpoint twice gives the same model id and stores nothing twice', async () => {
    const first = await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-bf16-sharded') })
    const before = await snapshot(env.store)
    const second = await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-bf16-sharded') })
    expect(second.modelId).to.equal(first.modelId)
    expect(second).to.include({ existing: first.blocks, bytesWritten: 0 })
    expect(await snapshot(env.store)).to.deep.equal(before)
    // another node importing the same checkpoint authors other blocks
    const other = await importModel({ store: env.store, signer: signer(2), dir: fixtureDir('untied-bf16-sharded') })
    expect(other.modelId).to.not.equal(first.modelId)
    expect(other.existing).to.equal(0)
  })

  it('names the model after the folder unless told, and the name is part of the id', async () => {
    const a = await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-f32') })
    const b = await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-f32'), name: 'tiny' })
    expect(a.name).to.equal('untied-f32')
    expect(b.name).to.equal('tiny')
    expect(b.modelId).to.not.equal(a.modelId)
  })

  it('reports progress: hashing every byte first, then writing every byte', async () => {
    const seen: Array<{ phase: string, done: number, total: number }> = []
    const result = await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-f32'), onProgress: p => { seen.push({ ...p }) } })
    const hash = seen.filter(p => p.phase === 'hash')
    const write = seen.filter(p => p.phase === 'write')
    expect(hash.length).to.be.greaterThan(0)
    expect(seen.findIndex(p => p.phase === 'write')).to.equal(hash.length)
    // every unit byte hashed (the manifest is built after), then every block byte written
    expect(hash.at(-1)?.done).to.equal(hash[0].total)
    expect(hash[0].total).to.be.lessThan(result.bytes)
    expect(write.at(-1)?.done).to.equal(result.bytes)
    expect(write.at(-1)?.total).to.equal(result.bytes)
  })

  for (const damage of DAMAGES) {
    it(`refuses a checkpoint with ${damage.name} (${damage.code}) and leaves the chain unchanged`, async () => {
      await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-f32') })
      const before = await snapshot(env.store)
      const bad = join(env.dir, 'bad')
      await damagedCopy(damage, bad)
      const err = await importModel({ store: env.store, signer: signer(1), dir: bad }).then(() => undefined, (e: any) => e)
      expect(err, 'import succeeded').to.not.equal(undefined)
      expect(err.code).to.equal(damage.code, err.message)
      expect(err.message).to.include(damage.says)
      expect(await snapshot(env.store)).to.deep.equal(before)
    })
  }

  it('fails a layer block before it is stored when the checkpoint changes during the import', async () => {
    const copy = join(env.dir, 'ck')
    await damagedCopy({ ...DAMAGES[0], apply: async () => {} }, copy)
    const ck = await SafetensorsCheckpoint.open(copy)
    const at = (ck.entry('model.embed_tokens.weight')?.start ?? 0) + 100
    await ck.close()
    let changed = false
    const err = await importModel({
      store: env.store,
      signer: signer(1),
      dir: copy,
      onProgress: p => {
        if (p.phase === 'write' && !changed) {
          changed = true
          // flip a byte of embed_tokens (unit 0) after it was hashed
          const fd = openSync(join(copy, 'model.safetensors'), 'r+')
          const b = Buffer.alloc(1)
          readSync(fd, b, 0, 1, at)
          b[0] ^= 0xff
          writeSync(fd, b, 0, 1, at)
          closeSync(fd)
        }
      }
    }).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.CHECKPOINT_CHANGED)
    const [manifest] = await collect(env.store.byType(BlockType.ModelManifest))
    expect(await env.store.byModelUnit(manifest.id, 0)).to.have.length(0)
    expect((await env.store.counts()).B).to.equal(0)
  })

  it('imports the tokenizer files, or a --tokenizer given beside the checkpoint, and checks the vocab covers it', async () => {
    const { bundledQwen3TokenizerFiles } = await import('../../src/model/tokenizer.ts')
    const files = bundledQwen3TokenizerFiles()
    const copy = join(env.dir, 'ck')
    await damagedCopy({ ...DAMAGES[0], apply: async () => {} }, copy)
    // the fixture's vocab (512) does not cover Qwen3's tokenizer
    const err = await importModel({ store: env.store, signer: signer(1), dir: copy, tokenizer: files.tokenizerJson }).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal(ModelErrorCode.BAD_TOKENIZER)
    expect(err.message).to.include('vocab_size is 512')
    expect((await env.store.counts()).total).to.equal(0)
    const config = JSON.parse(await readFile(join(copy, 'config.json'), 'utf8'))
    await writeFile(join(copy, 'config.json'), JSON.stringify({ ...config, vocab_size: 151936 }))
    // (the weights no longer fit the config: shapes are checked after the tokenizer)
    const shapeErr = await importModel({ store: env.store, signer: signer(1), dir: copy, tokenizer: files.tokenizerJson }).then(() => undefined, (e: any) => e)
    expect(shapeErr?.code).to.equal(ModelErrorCode.WRONG_SHAPE)
  })
})
