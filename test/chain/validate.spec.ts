import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { encodeBlockHeader, encodeSignedBlockHeader } from '../../src/protocols/block-header.ts'
import { MAX_DATASET_BYTES, encodeIdsPayload } from '../../src/protocols/dataset.ts'
import { bytesOf, expectCode, header, hex, openStore, removeDir, signBytes, signHeader, signer, tempDir, withPayload } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { FieldValue } from '../../src/chain/types.ts'

const alice = signer(1)
const bob = signer(2)

describe('block validation', () => {
  let dir: string
  let store: ChainStore

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir, { limits: { maxPayloadSize: 1_000_000n, maxHeaderBytes: 16 * 1024 } })
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  /** the block was rejected with `code`, counted, and nothing of it is visible */
  async function expectRejected (p: Promise<unknown>, code: string, id?: Uint8Array): Promise<void> {
    const before = store.metrics().rejected[code] ?? 0
    const total = (await store.counts()).total
    await expectCode(p, code)
    expect(store.metrics().rejected[code]).to.equal(before + 1)
    expect((await store.counts()).total).to.equal(total)
    if (id != null) {
      expect(await store.has(id)).to.equal(false)
    }
  }

  async function manifest (s = alice): Promise<Uint8Array> {
    const { id, encoded } = await signHeader(header({ author: s.publicKey, type: BlockType.ModelManifest }), s)
    expect(await store.addBlock(encoded)).to.equal('added')
    return id
  }

  function layer (model: Uint8Array, s = alice, over: Record<string, unknown> = {}): ReturnType<typeof header> {
    return header({
      author: s.publicKey,
      chain: ChainId.B,
      type: BlockType.Layer,
      parents: [model],
      fields: new Map([['model', { kind: 'bytes', value: model }], ['unit', { kind: 'uint', value: 0n }]]),
      ...over
    })
  }

  it('accepts a valid block, then reports it as a duplicate', async () => {
    const { id, encoded } = await signHeader(header({ author: alice.publicKey }), alice)
    expect(await store.addBlock(encoded)).to.equal('added')
    expect(await store.addBlock(encoded)).to.equal('duplicate')
    expect(await store.getEncoded(id)).to.deep.equal(encoded)
    expect(store.metrics().duplicates).to.equal(1)
  })

  it('ERR_BLOCK_ENCODING: garbage and non-canonical headers', async () => {
    await expectRejected(store.addBlock(bytesOf(100)), 'ERR_BLOCK_ENCODING')
    const bytes = encodeBlockHeader(header({ author: alice.publicKey }))
    const nonMinimal = Uint8Array.from([0x08, 0x81, 0x00, ...bytes.subarray(2)])
    const { id, encoded } = await signBytes(nonMinimal, alice)
    await expectRejected(store.addBlock(encoded), 'ERR_BLOCK_ENCODING', id)
  })

  it('ERR_BLOCK_ID: a block that is not the one asked for', async () => {
    const { id, encoded } = await signHeader(header({ author: alice.publicKey }), alice)
    const wrong = id.slice()
    wrong[0] ^= 1
    await expectRejected(store.addBlock(encoded, undefined, { expectedId: wrong }), 'ERR_BLOCK_ID', id)
    expect(await store.addBlock(encoded, undefined, { expectedId: id })).to.equal('added')
  })

  it('ERR_BLOCK_SIGNATURE: flipped signature byte', async () => {
    const { id, encoded } = await signHeader(header({ author: alice.publicKey }), alice)
    const flipped = encoded.slice()
    flipped[flipped.length - 5] ^= 0x01
    await expectRejected(store.addBlock(flipped), 'ERR_BLOCK_SIGNATURE', id)
  })

  it('ERR_BLOCK_SIGNATURE: flipped header byte (the id changes, the signature no longer covers it)', async () => {
    const h = header({ author: alice.publicKey, timestamp: 1_700_000_000_000n })
    const bytes = encodeBlockHeader(h)
    const { encoded } = await signBytes(bytes, alice)
    const tampered = encoded.slice()
    // the last header byte is inside the timestamp varint's final byte
    tampered[2 + bytes.length - 1] ^= 0x01
    await expectRejected(store.addBlock(tampered), 'ERR_BLOCK_SIGNATURE')
    expect((await store.counts()).total).to.equal(0)
  })

  it('ERR_BLOCK_SIGNATURE: signed by someone other than the author', async () => {
    const { id, encoded } = await signHeader(header({ author: alice.publicKey }), bob)
    await expectRejected(store.addBlock(encoded), 'ERR_BLOCK_SIGNATURE', id)
  })

  it('ERR_UNKNOWN_PARENT: an orphan waits in the pool and is accepted when its parent arrives', async () => {
    const parent = await signHeader(header({ author: alice.publicKey }), alice)
    const child = await signHeader(header({ author: alice.publicKey, parents: [parent.id] }), alice)
    const grandchild = await signHeader(header({ author: bob.publicKey, parents: [child.id] }), bob)
    expect(await store.addBlock(grandchild.encoded)).to.equal('orphaned')
    expect(await store.addBlock(child.encoded)).to.equal('orphaned')
    expect(await store.has(child.id)).to.equal(false)
    expect((await store.counts()).orphans).to.equal(2)
    expect(store.missingParents().map(hex)).to.deep.equal([hex(parent.id)])
    expect(await store.addBlock(parent.encoded)).to.equal('added')
    expect(await store.has(child.id)).to.equal(true)
    expect(await store.has(grandchild.id)).to.equal(true)
    expect(store.metrics().orphansAccepted).to.equal(2)
    expect(await store.counts()).to.deep.equal({ A: 3, B: 0, total: 3, orphans: 0 })
  })

  it('ERR_UNKNOWN_PARENT: the orphan pool is bounded, FIFO eviction is counted', async () => {
    await store.stop()
    store = await openStore(dir, { orphanPoolSize: 2 })
    const missing = new Uint8Array(32).fill(0xaa)
    const orphans = []
    for (let i = 0; i < 3; i++) {
      orphans.push(await signHeader(header({ author: alice.publicKey, parents: [missing], timestamp: BigInt(i + 1) }), alice))
      expect(await store.addBlock(orphans[i].encoded)).to.equal('orphaned')
    }
    expect(store.metrics().orphansEvicted).to.equal(1)
    expect((await store.counts()).orphans).to.equal(2)
  })

  it('ERR_UNKNOWN_PARENT: thrown when the orphan pool is disabled', async () => {
    await store.stop()
    store = await openStore(dir, { orphanPoolSize: 0 })
    const { id, encoded } = await signHeader(header({ author: alice.publicKey, parents: [new Uint8Array(32).fill(1)] }), alice)
    await expectRejected(store.addBlock(encoded), 'ERR_UNKNOWN_PARENT', id)
  })

  it('ERR_BLOCK_TYPE: type on the wrong chain, unknown type; a Delta is no longer reserved (its own rules apply)', async () => {
    const wrongChain = await signHeader(header({ author: alice.publicKey, chain: ChainId.B, type: BlockType.ModelManifest }), alice)
    await expectRejected(store.addBlock(wrongChain.encoded), 'ERR_BLOCK_TYPE', wrongChain.id)
    const unknown = await signHeader(header({ author: alice.publicKey, type: 99 as BlockType }), alice)
    await expectRejected(store.addBlock(unknown.encoded), 'ERR_BLOCK_TYPE', unknown.id)
    const delta = await signHeader(header({ author: alice.publicKey, chain: ChainId.B, type: BlockType.Delta }), alice)
    const err = await expectCode(store.addBlock(delta.encoded), 'ERR_DELTA_BLOCK_FIELDS')
    expect(err.message).to.match(/needs field 'model'/)
  })

  it('ERR_BLOCK_TYPE: a Layer block without model/unit fields or not listing its manifest', async () => {
    const m = await manifest()
    const noFields = await signHeader(layer(m, alice, { fields: new Map() }), alice)
    await expectRejected(store.addBlock(noFields.encoded), 'ERR_BLOCK_TYPE', noFields.id)
    const badUnit = await signHeader(layer(m, alice, { fields: new Map([['model', { kind: 'bytes', value: m }], ['unit', { kind: 'string', value: '0' }]]) }), alice)
    await expectRejected(store.addBlock(badUnit.encoded), 'ERR_BLOCK_TYPE', badUnit.id)
    const notParent = await signHeader(layer(m, alice, { parents: [] }), alice)
    await expectRejected(store.addBlock(notParent.encoded), 'ERR_BLOCK_TYPE', notParent.id)
    const ok = await signHeader(layer(m), alice)
    expect(await store.addBlock(ok.encoded)).to.equal('added')
  })

  it('ERR_BLOCK_TYPE: only the manifest publisher may publish its layer blocks', async () => {
    const m = await manifest(alice)
    const byBob = await signHeader(layer(m, bob), bob)
    await expectRejected(store.addBlock(byBob.encoded), 'ERR_BLOCK_TYPE', byBob.id)
  })

  it('ERR_BLOCK_TYPE: the model parent must be a ModelManifest (also for an orphan accepted later)', async () => {
    const note = await signHeader(header({ author: alice.publicKey }), alice)
    const l = await signHeader(layer(note.id), alice)
    expect(await store.addBlock(l.encoded)).to.equal('orphaned')
    expect(await store.addBlock(note.encoded)).to.equal('added')
    expect(await store.has(l.id)).to.equal(false)
    expect(store.metrics().orphansRejected).to.equal(1)
    expect(store.metrics().rejected.ERR_BLOCK_TYPE).to.equal(1)
  })

  it('ERR_PAYLOAD_TOO_LARGE: declared payload or chunk size above the limits', async () => {
    const big = await signHeader(header({ author: alice.publicKey, payloadSize: 1_000_001n, chunkSize: 1024 * 1024, chunkHashes: [new Uint8Array(32)] }), alice)
    await expectRejected(store.addBlock(big.encoded), 'ERR_PAYLOAD_TOO_LARGE', big.id)
    const bigChunk = await signHeader(header({ author: alice.publicKey, payloadSize: 1000n, chunkSize: 32 * 1024 * 1024, chunkHashes: [new Uint8Array(32)] }), alice)
    await expectRejected(store.addBlock(bigChunk.encoded), 'ERR_PAYLOAD_TOO_LARGE', bigChunk.id)
  })

  it('ERR_PAYLOAD_TOO_LARGE: a streamed payload over the limit is refused while streaming', async () => {
    await expectCode(store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: new Uint8Array(1_000_001), chunkSize: 64 * 1024 }, alice), 'ERR_PAYLOAD_TOO_LARGE')
    expect((await store.counts()).total).to.equal(0)
  })

  it('ERR_HEADER_TOO_LARGE: an oversize header', async () => {
    const { id, encoded } = await signHeader(header({ author: alice.publicKey, fields: new Map([['blob', { kind: 'bytes', value: new Uint8Array(20_000) }]]) }), alice)
    await expectRejected(store.addBlock(encoded), 'ERR_HEADER_TOO_LARGE', id)
  })

  it('ERR_TOO_MANY_PARENTS', async () => {
    const parents = Array.from({ length: 65 }, (_, i) => { const p = new Uint8Array(32); p[0] = i; p[1] = 1; return p })
    const { id, encoded } = await signHeader(header({ author: alice.publicKey, parents }), alice)
    await expectRejected(store.addBlock(encoded), 'ERR_TOO_MANY_PARENTS', id)
  })

  it('ERR_PAYLOAD_SIZE: chunk count inconsistent with payload_size, or payload bytes of the wrong length', async () => {
    const payload = bytesOf(5000)
    const h = withPayload(header({ author: alice.publicKey }), payload, 2048)
    const fewer = await signHeader({ ...h, chunkHashes: h.chunkHashes.slice(1) }, alice)
    await expectRejected(store.addBlock(fewer.encoded), 'ERR_PAYLOAD_SIZE', fewer.id)
    const noChunkSize = await signHeader({ ...h, chunkSize: 0 }, alice)
    await expectRejected(store.addBlock(noChunkSize.encoded), 'ERR_PAYLOAD_SIZE', noChunkSize.id)
    const good = await signHeader(h, alice)
    await expectRejected(store.addBlock(good.encoded, payload.subarray(1)), 'ERR_PAYLOAD_SIZE', good.id)
  })

  it('ERR_CHUNK_HASH: a flipped payload byte; nothing stored, no chunk written', async () => {
    const payload = bytesOf(5000)
    const good = await signHeader(withPayload(header({ author: alice.publicKey }), payload, 2048), alice)
    const bad = payload.slice()
    bad[4500] ^= 0x80
    await expectRejected(store.addBlock(good.encoded, bad), 'ERR_CHUNK_HASH', good.id)
    expect(store.metrics().chunksWritten).to.equal(0)
    expect(await store.addBlock(good.encoded, payload)).to.equal('added')
    expect((await store.get(good.id))?.payloadComplete).to.equal(true)
  })

  it('ERR_CHUNK_HASH: putChunk with bytes that do not match; then the right ones complete the payload', async () => {
    const payload = bytesOf(5000)
    const good = await signHeader(withPayload(header({ author: alice.publicKey }), payload, 2048), alice)
    expect(await store.addBlock(good.encoded)).to.equal('added')
    expect((await store.get(good.id))?.payloadComplete).to.equal(false)
    expect(await store.missingChunks(good.id)).to.deep.equal([0, 1, 2])
    const wrong = payload.slice(0, 2048)
    wrong[0] ^= 1
    await expectRejected(store.putChunk(good.id, 0, wrong), 'ERR_CHUNK_HASH')
    await expectRejected(store.putChunk(good.id, 2, payload.subarray(4096, 4999)), 'ERR_PAYLOAD_SIZE')
    await store.putChunk(good.id, 0, payload.subarray(0, 2048))
    await store.putChunk(good.id, 2, payload.subarray(4096))
    expect(await store.missingChunks(good.id)).to.deep.equal([1])
    await expectCode(store.getChunk(good.id, 1), 'ERR_CHUNK_MISSING')
    await store.putChunk(good.id, 1, payload.subarray(2048, 4096))
    expect((await store.get(good.id))?.payloadComplete).to.equal(true)
    expect(await store.getChunk(good.id, 1)).to.deep.equal(payload.subarray(2048, 4096))
  })

  it('rejects a malformed envelope with ERR_BLOCK_ENCODING', async () => {
    const bytes = encodeBlockHeader(header({ author: alice.publicKey }))
    const env = encodeSignedBlockHeader({ header: bytes, signature: new Uint8Array(64) })
    await expectRejected(store.addBlock(env.subarray(0, env.length - 1)), 'ERR_BLOCK_ENCODING')
  })

  describe('Dataset blocks', () => {
    const idsPayload = encodeIdsPayload({ tokens: Uint32Array.of(1, 2, 3, 4, 5), offsets: Uint32Array.of(0, 2, 5) })
    const textPayload = new TextEncoder().encode('a small corpus\n')

    function uint (value: number | bigint): FieldValue {
      return { kind: 'uint', value: BigInt(value) }
    }

    /** a Dataset header: ids (with `model`) or text, with field overrides (undefined drops a field) */
    function dataset (model: Uint8Array | undefined, over: Record<string, FieldValue | undefined> = {}, rest: Record<string, unknown> = {}): ReturnType<typeof header> {
      const payload = model != null ? idsPayload : textPayload
      const fields: Record<string, FieldValue | undefined> = {
        name: { kind: 'string', value: model != null ? 'ids-set' : 'text-set' },
        format: { kind: 'string', value: model != null ? 'ids' : 'text' },
        sequences: uint(model != null ? 2 : 1),
        tokens: uint(model != null ? 5 : 0),
        bytes: uint(payload.length),
        evalPermille: uint(100),
        splitTokens: uint(128),
        ...(model != null ? { model: { kind: 'bytes', value: model } } : {}),
        ...over
      }
      const map = new Map(Object.entries(fields).filter((e): e is [string, FieldValue] => e[1] != null))
      return withPayload(header({ author: bob.publicKey, type: BlockType.Dataset, parents: model != null ? [model] : [], fields: map, ...rest }), payload, 1024)
    }

    async function rejected (h: ReturnType<typeof header>, code: string, message: RegExp): Promise<void> {
      const { id, encoded } = await signHeader(h, bob)
      const before = store.metrics().rejected[code] ?? 0
      const total = (await store.counts()).total
      const err = await expectCode(store.addBlock(encoded), code)
      expect(err.message).to.match(message)
      expect(store.metrics().rejected[code]).to.equal(before + 1)
      expect((await store.counts()).total).to.equal(total)
      expect(await store.has(id)).to.equal(false)
    }

    it('accepts an ids dataset listing its model (by anyone) and a text dataset, with their payloads', async () => {
      const m = await manifest(alice)
      const ids = await signHeader(dataset(m), bob)
      expect(await store.addBlock(ids.encoded, idsPayload)).to.equal('added')
      const text = await signHeader(dataset(undefined), bob)
      expect(await store.addBlock(text.encoded, textPayload)).to.equal('added')
      expect((await store.get(ids.id))?.payloadComplete).to.equal(true)
      expect((await store.get(text.id))?.header.chain).to.equal(ChainId.A)
    })

    it('ERR_BLOCK_TYPE: a Dataset block on chain B', async () => {
      await rejected(dataset(undefined, {}, { chain: ChainId.B }), 'ERR_BLOCK_TYPE', /belongs on chain 1/)
    })

    it('ERR_DATASET_BLOCK_FIELDS: every required field missing or of the wrong kind', async () => {
      const m = await manifest()
      for (const key of ['name', 'format', 'sequences', 'tokens', 'bytes', 'evalPermille', 'splitTokens', 'model']) {
        await rejected(dataset(m, { [key]: undefined }), 'ERR_DATASET_BLOCK_FIELDS', new RegExp(`'${key}'`))
        const wrong: FieldValue = key === 'name' || key === 'format' || key === 'model' ? uint(1) : { kind: 'string', value: '1' }
        await rejected(dataset(m, { [key]: wrong }), 'ERR_DATASET_BLOCK_FIELDS', new RegExp(`'${key}'`))
      }
    })

    it('ERR_DATASET_BLOCK_FIELDS: values out of range', async () => {
      const m = await manifest()
      const cases: Array<[Record<string, FieldValue | undefined>, RegExp]> = [
        [{ name: { kind: 'string', value: '' } }, /'name'/],
        [{ name: { kind: 'string', value: 'has space' } }, /'name'/],
        [{ name: { kind: 'string', value: 'x'.repeat(65) } }, /'name'/],
        [{ format: { kind: 'string', value: 'csv' } }, /'format'/],
        [{ evalPermille: uint(1001) }, /'evalPermille' is 1001/],
        [{ splitTokens: uint(1) }, /'splitTokens' is 1/],
        [{ splitTokens: uint(65537) }, /'splitTokens' is 65537/],
        [{ model: { kind: 'bytes', value: m.subarray(0, 31) } }, /'model'/],
        [{ extra: uint(1) }, /may not carry field 'extra'/],
        [{ sequences: uint(0), tokens: uint(0) }, />= 1 sequence/],
        [{ sequences: uint(3), tokens: uint(5) }, />= 2 tokens each/]
      ]
      for (const [over, message] of cases) {
        await rejected(dataset(m, over), 'ERR_DATASET_BLOCK_FIELDS', message)
      }
    })

    it('ERR_DATASET_BLOCK_FIELDS: a text dataset carries no model, one sequence and tokens 0', async () => {
      const m = await manifest()
      await rejected(dataset(undefined, { model: { kind: 'bytes', value: m } }, { parents: [m] }), 'ERR_DATASET_BLOCK_FIELDS', /may not carry field 'model'/)
      await rejected(dataset(undefined, { sequences: uint(2) }), 'ERR_DATASET_BLOCK_FIELDS', /sequences = 1 and tokens = 0/)
      await rejected(dataset(undefined, { tokens: uint(10) }), 'ERR_DATASET_BLOCK_FIELDS', /sequences = 1 and tokens = 0/)
    })

    it('ERR_DATASET_BLOCK_PAYLOAD: no payload, `bytes` not the payload size, an ids size its counts do not give', async () => {
      const m = await manifest()
      await rejected({ ...dataset(undefined, { bytes: uint(0) }), payloadSize: 0n, chunkSize: 0, chunkHashes: [] }, 'ERR_DATASET_BLOCK_PAYLOAD', /needs a payload/)
      await rejected(dataset(undefined, { bytes: uint(textPayload.length + 1) }), 'ERR_DATASET_BLOCK_PAYLOAD', /'bytes' is/)
      await rejected(dataset(m, { tokens: uint(6), bytes: uint(idsPayload.length) }), 'ERR_DATASET_BLOCK_PAYLOAD', /is 36 bytes, not 32/)
    })

    it('ERR_DATASET_BLOCK_PAYLOAD: a payload over MAX_DATASET_BYTES (under the store\'s own limit)', async () => {
      await store.stop()
      store = await openStore(dir)
      const size = MAX_DATASET_BYTES + 1
      const chunkSize = 16 * 1024 * 1024
      const h = dataset(undefined, { bytes: uint(size) })
      const big = { ...h, payloadSize: BigInt(size), chunkSize, chunkHashes: Array.from({ length: Math.ceil(size / chunkSize) }, (_, i) => new Uint8Array(32).fill(i + 1)) }
      await rejected(big, 'ERR_DATASET_BLOCK_PAYLOAD', /exceeds the limit of 268435456/)
    })

    it('ERR_DATASET_BLOCK_PARENT: an ids dataset that does not list its model', async () => {
      const m = await manifest()
      await rejected(dataset(m, {}, { parents: [] }), 'ERR_DATASET_BLOCK_PARENT', /must list its model manifest/)
    })

    it('ERR_DATASET_BLOCK_PARENT: the model parent is not a ModelManifest (also for an orphan accepted later)', async () => {
      const note = await signHeader(header({ author: alice.publicKey }), alice)
      expect(await store.addBlock(note.encoded)).to.equal('added')
      await rejected(dataset(note.id), 'ERR_DATASET_BLOCK_PARENT', /is not a ModelManifest block/)
      const other = await signHeader(header({ author: alice.publicKey, timestamp: 5n }), alice)
      const orphan = await signHeader(dataset(other.id), bob)
      expect(await store.addBlock(orphan.encoded)).to.equal('orphaned')
      expect(await store.addBlock(other.encoded)).to.equal('added')
      expect(await store.has(orphan.id)).to.equal(false)
      expect(store.metrics().rejected.ERR_DATASET_BLOCK_PARENT).to.equal(2)
    })
  })
})
