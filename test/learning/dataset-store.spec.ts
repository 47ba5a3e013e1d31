/**
 * Datasets written to and read from a real chain store, with real models
 * imported: the tiny fixture (vocab 512, no tokenizer) for ids, the demo
 * checkpoint (the real Qwen3 tokenizer) for text.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { addDataset, addDatasetFromFile, datasetHeader, findDataset, listDatasets, loadDatasetWindows, readTokenStream, showDataset } from '../../src/learning/dataset-store.ts'
import { sampleEvalWindows, windowTokens } from '../../src/learning/dataset-windows.ts'
import { writeDemoCheckpoint } from '../../src/model/demo-checkpoint.ts'
import { importModel } from '../../src/model/import/importer.ts'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'
import { decodeIdsPayload, encodeIdsPayload, splitWindows } from '../../src/protocols/dataset.ts'
import { collect, hex, openStore, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import type { ChainStore } from '../../src/chain/index.ts'

const enc = new TextEncoder()
const node = signer(7)

function jsonl (sequences: number[][]): Uint8Array {
  return enc.encode(sequences.map(ids => JSON.stringify({ ids })).join('\n') + '\n')
}

/** `count` sequences of pseudo-random lengths 2..300 over vocab 512 */
function corpus (count: number, seed = 1): number[][] {
  let x = seed
  const next = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x >>> 8 }
  return Array.from({ length: count }, () => Array.from({ length: 2 + next() % 299 }, () => next() % 512))
}

const TEXT = 'The quick brown fox jumps over the lazy dog. Über café naïve — 数据集 ✓\n'.repeat(40)

describe('learning/dataset-store', function () {
  this.timeout(120_000)
  const env = {} as { dir: string, store: ChainStore, tiny: string, demo: string }

  before(async () => {
    env.dir = await tempDir('blyd-datasets-')
    // the demo checkpoint (real Qwen3 tokenizer) is imported once and copied per test through its store
    await writeDemoCheckpoint(join(env.dir, 'demo-ckpt'), { layers: 1, hidden: 16, heads: 2, kvHeads: 1, headDim: 8, intermediate: 32 })
  })

  beforeEach(async () => {
    env.store = await openStore(join(env.dir, `chain-${Math.random().toString(16).slice(2)}`))
  })

  afterEach(async () => {
    await env.store.stop()
  })

  after(async () => {
    await removeDir(env.dir)
  })

  async function importTiny (): Promise<string> {
    return (await importModel({ store: env.store, signer: signer(1), dir: fixtureDir('untied-f32') })).modelId
  }

  async function importDemo (): Promise<string> {
    return (await importModel({ store: env.store, signer: signer(1), dir: join(env.dir, 'demo-ckpt') })).modelId
  }

  /** `p` rejects with a DatasetError (or ModelError) of `code`, and the store holds no new block */
  async function refused (p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
    const before = await env.store.counts()
    let err: any
    try {
      await p
    } catch (e) {
      err = e
    }
    expect(err, 'expected a rejection').to.exist()
    expect(err.code, err.message).to.equal(code)
    if (message != null) {
      expect(err.message).to.match(message)
    }
    expect(await env.store.counts()).to.deep.equal(before)
  }

  async function countDatasets (): Promise<number> {
    let n = 0
    for await (const block of env.store.byType(BlockType.Dataset)) {
      n += block.header.type === BlockType.Dataset ? 1 : 0
    }
    return n
  }

  it('ids: a Dataset block on chain A naming its model, the canonical payload, and the split counts', async () => {
    const model = await importTiny()
    const sequences = corpus(40)
    const json = await addDataset({ store: env.store, signer: node, bytes: jsonl(sequences), name: 'tiny-ids', format: 'ids', model: model.slice(0, 12), splitTokens: 32 })
    const tokens = sequences.reduce((n, s) => n + s.length, 0)
    expect(json).to.include({ name: 'tiny-ids', format: 'ids', sequences: 40, tokens, evalPermille: 100, splitTokens: 32, model, author: hex(node.publicKey), stored: true })
    expect(json.bytes).to.equal(4 + 4 * 40 + 4 * tokens)
    const block = await findDataset(env.store, 'tiny-ids')
    expect(hex(block.id)).to.equal(json.id)
    expect(block.header.chain).to.equal(ChainId.A)
    expect(block.header.type).to.equal(BlockType.Dataset)
    expect(block.header.parents.map(hex)).to.deep.equal([model])
    const payload = Buffer.from(await collect(env.store.readPayload(block.id)))
    expect(payload).to.deep.equal(Buffer.from(encodeIdsPayload({ tokens: Uint32Array.from(sequences.flat()), offsets: Uint32Array.from([0, ...sequences.map((_, i) => sequences.slice(0, i + 1).reduce((n, s) => n + s.length, 0))]) })))
    expect(Array.from(decodeIdsPayload(payload).tokens)).to.deep.equal(sequences.flat())
    // the counts are the split rule's, computed independently from the sequence lengths
    const split = splitWindows({ datasetId: block.id, sequenceLengths: sequences.map(s => s.length), splitTokens: 32, evalPermille: 100 })
    expect(json.trainWindows).to.equal(split.trainWindows.length)
    expect(json.evalWindows).to.equal(split.evalWindows.length)
    expect(json.trainWindows! + json.evalWindows!).to.equal(sequences.reduce((n, s) => n + Math.floor(s.length / 32) + (s.length % 32 >= 2 ? 1 : 0), 0))
    expect(await showDataset(env.store, json.id.slice(0, 10))).to.deep.equal(json)
    expect(await listDatasets(env.store)).to.deep.equal([json])
  })

  it('ids: the model defaults to the only one on chain; the windows carry the sequences\' tokens', async () => {
    const model = await importTiny()
    const sequences = corpus(10, 3)
    const json = await addDataset({ store: env.store, signer: node, bytes: jsonl(sequences), name: 'd', format: 'ids', splitTokens: 16, evalPermille: 300 })
    expect(json.model).to.equal(model)
    const block = await findDataset(env.store, 'd')
    const w = await loadDatasetWindows(env.store, block)
    const fromWindows = Array.from({ length: w.split.count }, (_, i) => Array.from(windowTokens(w, i))).flat()
    const expected = sequences.flatMap(s => s.slice(0, s.length - (s.length % 16 === 1 ? 1 : 0)))
    expect(fromWindows).to.deep.equal(expected)
    // a validator's sample is the same from a second read of the chain
    const seed = enc.encode('seed')
    const again = await loadDatasetWindows(env.store, await findDataset(env.store, json.id))
    expect(sampleEvalWindows(again, seed, 8)).to.deep.equal(sampleEvalWindows(w, seed, 8))
  })

  it('ids: bad input is refused with its line and stores nothing', async () => {
    const model = await importTiny()
    const add = async (text: string, over: Record<string, unknown> = {}): Promise<unknown> => addDataset({ store: env.store, signer: node, bytes: enc.encode(text), name: 'bad', format: 'ids', model, ...over })
    await refused(add('{"ids":[1,2]}\n{"ids":[3,512]}\n'), 'ERR_DATASET_ID', /^line 2: ids\[1\] = 512 is out of range \[0, 512\) of model [0-9a-f]{12} \(vocab 512\)$/)
    await refused(add('{"ids":[1,2]}\n{"ids":[3,4]\n'), 'ERR_DATASET_JSON', /^line 2 is not valid JSON/)
    await refused(add('{"ids":[1]}'), 'ERR_DATASET_SHORT_SEQUENCE', /^line 1 has 1 id/)
    await refused(add(''), 'ERR_DATASET_EMPTY')
    await refused(add('\n\n'), 'ERR_DATASET_EMPTY')
    await refused(add('{"ids":[1,2]}', { name: 'has space' }), 'ERR_DATASET_NAME')
    await refused(add('{"ids":[1,2]}', { evalPermille: 1001 }), 'ERR_DATASET_OPTION', /eval-permille/)
    await refused(add('{"ids":[1,2]}', { splitTokens: 1 }), 'ERR_DATASET_OPTION', /split-tokens/)
    await refused(add('{"ids":[1,2]}', { model: 'ffffffffff' }), 'ERR_MODEL_NOT_FOUND')
    await addDataset({ store: env.store, signer: node, bytes: jsonl([[1, 2]]), name: 'taken', format: 'ids' })
    await refused(add('{"ids":[5,6]}', { name: 'taken' }), 'ERR_DATASET_NAME_TAKEN', /a dataset named taken is already on chain A \([0-9a-f]{64}\)/)
    expect(await countDatasets()).to.equal(1)
  })

  it('ids: with no model on chain, or several, --model is needed', async () => {
    const add = async (): Promise<unknown> => addDataset({ store: env.store, signer: node, bytes: jsonl([[1, 2]]), name: 'x', format: 'ids' })
    await refused(add(), 'ERR_DATASET_MODEL', /there is no model on chain A/)
    await importTiny()
    await importDemo()
    await refused(add(), 'ERR_DATASET_MODEL', /2 models are on chain A, name one with --model/)
  })

  it('ids: read for another model, the ids are checked against that model\'s vocabulary too', async () => {
    const tiny = await importTiny()
    const small = join(env.dir, 'small-vocab')
    await writeDemoCheckpoint(small, { tokenizer: false, vocab: 300, layers: 1, hidden: 16, heads: 2, kvHeads: 1, headDim: 8, intermediate: 32 })
    const smallId = (await importModel({ store: env.store, signer: signer(1), dir: small })).modelId
    const d = await addDataset({ store: env.store, signer: node, bytes: jsonl([[1, 2], [3, 400]]), name: 'wide', format: 'ids', model: tiny })
    await refused(showDataset(env.store, 'wide', smallId), 'ERR_DATASET_ID', /holds id 400, out of range \[0, 300\) of model/)
    // the windows do not depend on the model: read for the tiny model or none, the same
    expect(await showDataset(env.store, 'wide', tiny)).to.deep.equal(d)
  })

  it('text: stored as its bytes; windows counted with a model\'s real tokenizer when one is given', async () => {
    const demo = await importDemo()
    const tokenizerFiles = bundledQwen3TokenizerFiles()
    const tokenizer = ChatTokenizer.fromJson(await readFile(tokenizerFiles.tokenizerJson, 'utf8'), await readFile(tokenizerFiles.tokenizerConfig, 'utf8'))
    const expectedTokens = tokenizer.encode(TEXT)
    expect(expectedTokens.length).to.be.above(500)
    const json = await addDataset({ store: env.store, signer: node, bytes: enc.encode(TEXT), name: 'prose', format: 'text', model: demo, splitTokens: 16 })
    expect(json).to.include({ format: 'text', sequences: 1, bytes: Buffer.byteLength(TEXT), tokens: expectedTokens.length, model: demo, evalPermille: 100 })
    const block = await findDataset(env.store, 'prose')
    expect(block.header.parents).to.deep.equal([])
    expect(datasetHeader(block)).to.include({ tokens: 0, sequences: 1 })
    expect(Buffer.from(await collect(env.store.readPayload(block.id))).toString('utf8')).to.equal(TEXT)
    const split = splitWindows({ datasetId: block.id, sequenceLengths: [expectedTokens.length], splitTokens: 16, evalPermille: 100 })
    expect([json.trainWindows, json.evalWindows]).to.deep.equal([split.trainWindows.length, split.evalWindows.length])
    await refused(readTokenStream(env.store, block), 'ERR_DATASET_MODEL', /dataset prose is text: name the model/)
    // without a model a text dataset has no token count and no windows
    expect(await showDataset(env.store, 'prose')).to.include({ tokens: null, trainWindows: null, evalWindows: null, model: null })
    expect(await showDataset(env.store, 'prose', demo.slice(0, 8))).to.deep.equal(json)
    const w = await loadDatasetWindows(env.store, block, demo)
    expect(Array.from(w.stream.tokens)).to.deep.equal(expectedTokens)
  })

  it('text: bad input is refused and stores nothing', async () => {
    const tiny = await importTiny()
    const add = async (bytes: Uint8Array, over: Record<string, unknown> = {}): Promise<unknown> => addDataset({ store: env.store, signer: node, bytes, name: 'bad-text', format: 'text', ...over })
    await refused(add(Buffer.from([0x61, 0x0a, 0x62, 0xc3, 0x28])), 'ERR_DATASET_UTF8', /^line 2 is not valid UTF-8/)
    await refused(add(new Uint8Array(0)), 'ERR_DATASET_EMPTY')
    await refused(add(enc.encode(TEXT), { model: tiny }), 'ERR_DATASET_MODEL', /has no tokenizer/)
    await refused(add(enc.encode(TEXT), { format: 'csv' }), 'ERR_DATASET_OPTION', /format must be text or ids/)
    expect(await countDatasets()).to.equal(0)
  })

  it('addDatasetFromFile: the format from the extension; a name check before any read', async () => {
    const model = await importTiny()
    await writeFile(join(env.dir, 'seqs.jsonl'), jsonl([[1, 2, 3]]))
    await writeFile(join(env.dir, 'seqs.txt'), '{"ids":[1,2,3]}\n')
    expect((await addDatasetFromFile({ store: env.store, signer: node, path: join(env.dir, 'seqs.jsonl'), name: 'from-jsonl' })).format).to.equal('ids')
    expect((await addDatasetFromFile({ store: env.store, signer: node, path: join(env.dir, 'seqs.txt'), name: 'from-txt' })).format).to.equal('text')
    expect((await addDatasetFromFile({ store: env.store, signer: node, path: join(env.dir, 'seqs.txt'), name: 'forced', format: 'ids', model })).format).to.equal('ids')
    await refused(addDatasetFromFile({ store: env.store, signer: node, path: join(env.dir, 'missing.txt'), name: 'ok' }), 'ERR_DATASET_FILE')
    await refused(addDatasetFromFile({ store: env.store, signer: node, path: join(env.dir, 'missing.txt'), name: '-bad' }), 'ERR_DATASET_NAME')
  })

  it('lookups: by exact name, by unique id prefix; unknown and ambiguous ones are errors', async () => {
    await importTiny()
    const a = await addDataset({ store: env.store, signer: node, bytes: jsonl([[1, 2]]), name: 'alpha', format: 'ids' })
    const b = await addDataset({ store: env.store, signer: node, bytes: enc.encode('some text'), name: 'beta', format: 'text' })
    expect(hex((await findDataset(env.store, 'alpha')).id)).to.equal(a.id)
    expect(hex((await findDataset(env.store, b.id.slice(0, 8).toUpperCase())).id)).to.equal(b.id)
    await refused(findDataset(env.store, 'gamma'), 'ERR_DATASET_NOT_FOUND', /no dataset named "gamma"/)
    await refused(findDataset(env.store, 'abc'), 'ERR_DATASET_NOT_FOUND')
    // the same name from another node (its block arrives by sync): lookups by that name are ambiguous
    const other = await openStore(join(env.dir, `other-${Math.random().toString(16).slice(2)}`))
    try {
      const dup = await addDataset({ store: other, signer: signer(8), bytes: enc.encode('other text'), name: 'beta', format: 'text' })
      expect(await env.store.addBlock((await other.getEncoded(Buffer.from(dup.id, 'hex')))!)).to.equal('added')
      await refused(findDataset(env.store, 'beta'), 'ERR_DATASET_AMBIGUOUS', /2 datasets are named beta/)
      // its payload has not arrived: listed, but not readable yet
      const listed = await listDatasets(env.store)
      expect(listed.map(d => d.name)).to.deep.equal(['alpha', 'beta', 'beta'])
      expect(listed.find(d => d.id === dup.id)).to.include({ stored: false, trainWindows: null })
      expect(listed.find(d => d.id === b.id)).to.include({ stored: true })
      const block = await findDataset(env.store, dup.id)
      await refused(readTokenStream(env.store, block, undefined), 'ERR_DATASET_PAYLOAD_MISSING')
    } finally {
      await other.stop()
    }
  })

  it('a dataset whose stored ids are out of its model\'s range (a peer skipped the check) reads as corrupt and is listed with the reason', async () => {
    const model = await importTiny()
    const bad = encodeIdsPayload({ tokens: Uint32Array.of(1, 600), offsets: Uint32Array.of(0, 2) })
    const block = await env.store.createBlock({
      chain: ChainId.A,
      type: BlockType.Dataset,
      parents: [Buffer.from(model, 'hex')],
      fields: {
        name: { kind: 'string', value: 'sneaky' },
        format: { kind: 'string', value: 'ids' },
        sequences: { kind: 'uint', value: 1n },
        tokens: { kind: 'uint', value: 2n },
        bytes: { kind: 'uint', value: BigInt(bad.length) },
        evalPermille: { kind: 'uint', value: 100n },
        splitTokens: { kind: 'uint', value: 128n },
        model: { kind: 'bytes', value: Buffer.from(model, 'hex') }
      },
      payload: bad
    }, signer(9))
    await refused(readTokenStream(env.store, block), 'ERR_DATASET_CORRUPT', /id 600 at position 1 is outside \[0, 512\)/)
    const [listed] = await listDatasets(env.store)
    expect(listed).to.include({ name: 'sneaky', trainWindows: null, evalWindows: null })
    expect(listed.error).to.match(/^ERR_DATASET_CORRUPT: /)
  })
})
