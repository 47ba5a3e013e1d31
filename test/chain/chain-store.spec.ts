import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { bytesOf, collect, expectCode, hex, openStore, pieces, removeDir, signer, tempDir } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { StoredBlock } from '../../src/chain/types.ts'

const alice = signer(1)

async function all (source: AsyncIterable<StoredBlock>): Promise<string[]> {
  const out: string[] = []
  for await (const b of source) {
    out.push(hex(b.id))
  }
  return out
}

describe('chain store', () => {
  let dir: string
  let store: ChainStore

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir, { chunkSize: 4096 })
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  it('throws ERR_NOT_STARTED before start', async () => {
    const other = await tempDir()
    const s = (await import('../../src/chain/index.ts')).createChainStore({ path: other })
    await expectCode(s.get(new Uint8Array(32)), 'ERR_NOT_STARTED')
    await removeDir(other)
  })

  it('stores a streamed payload in chunks and reads it back verified', async () => {
    const payload = bytesOf(50_000, 7)
    const block = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: pieces(payload, 3000) }, alice)
    expect(block.header.payloadSize).to.equal(50_000n)
    expect(block.header.chunkSize).to.equal(4096)
    expect(block.header.chunkHashes.length).to.equal(13)
    expect(block.payloadComplete).to.equal(true)
    expect(await collect(store.readPayload(block.id))).to.deep.equal(payload)
    expect(await store.getChunk(block.id, 12)).to.deep.equal(payload.subarray(12 * 4096))
    await expectCode(store.getChunk(block.id, 13), 'ERR_INVALID_ARGUMENT')
  })

  it('gives the same block id for the same payload whether streamed or whole', async () => {
    const payload = bytesOf(10_000, 3)
    const a = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload, timestamp: 5n }, alice)
    const b = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: pieces(payload, 777), timestamp: 5n }, alice)
    expect(hex(a.id)).to.equal(hex(b.id))
    expect((await store.counts()).total).to.equal(1)
  })

  it('keeps everything across a reopen', async () => {
    const payload = bytesOf(9000, 2)
    const m = await store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, payload }, alice)
    const l = await store.createBlock({ chain: ChainId.B, type: BlockType.Layer, parents: [m.id], fields: { model: { kind: 'bytes', value: m.id }, unit: { kind: 'uint', value: 3n } } }, alice)
    await store.stop()
    store = await openStore(dir)
    expect(await store.counts()).to.deep.equal({ A: 1, B: 1, total: 2, orphans: 0 })
    expect(await collect(store.readPayload(m.id))).to.deep.equal(payload)
    expect((await store.byModelUnit(m.id, 3)).map(b => hex(b.id))).to.deep.equal([hex(l.id)])
    expect(await store.getEncoded(l.id)).to.not.equal(undefined)
    const report = await store.verify()
    expect(report.issues).to.deep.equal([])
    expect(report.ok).to.equal(true)
    expect(report.blocks).to.equal(2)
    expect(report.bytes).to.equal(9000)
  })

  it('answers DAG queries on a diamond', async () => {
    //      root
    //     /    \
    //   left  right
    //     \    /
    //     join
    const root = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 1n }, alice)
    const left = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [root.id], timestamp: 2n }, alice)
    const right = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [root.id], timestamp: 3n }, alice)
    expect((await store.tips(ChainId.A)).map(hex).sort()).to.deep.equal([hex(left.id), hex(right.id)].sort())
    const join = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [right.id, left.id], timestamp: 4n }, alice)
    const m = await store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, parents: [join.id], timestamp: 5n }, alice)
    const layer = (unit: bigint, ts: bigint): Parameters<ChainStore['createBlock']>[0] => ({ chain: ChainId.B, type: BlockType.Layer, parents: [m.id], fields: { model: { kind: 'bytes', value: m.id }, unit: { kind: 'uint', value: unit } }, timestamp: ts })
    const l0 = await store.createBlock(layer(0n, 6n), alice)
    const l1 = await store.createBlock(layer(1n, 7n), alice)
    const l1b = await store.createBlock(layer(1n, 8n), alice)

    expect((await store.children(root.id)).map(hex).sort()).to.deep.equal([hex(left.id), hex(right.id)].sort())
    expect((await store.children(left.id)).map(hex)).to.deep.equal([hex(join.id)])
    expect(await store.children(l0.id)).to.deep.equal([])
    // the manifest got chain-B children but stays the tip of chain A
    expect((await store.tips(ChainId.A)).map(hex)).to.deep.equal([hex(m.id)])
    expect((await store.tips(ChainId.B)).map(hex).sort()).to.deep.equal([l0, l1, l1b].map(b => hex(b.id)).sort())
    expect((await store.tips()).length).to.equal(4)

    const order = await all(store.topological())
    expect(order.length).to.equal(8)
    const pos = (b: StoredBlock): number => order.indexOf(hex(b.id))
    expect(pos(root)).to.equal(0)
    for (const [parent, child] of [[root, left], [root, right], [left, join], [right, join], [join, m], [m, l0], [m, l1], [m, l1b]]) {
      expect(pos(parent)).to.be.lessThan(pos(child))
    }
    // ties (same height) broken by id
    expect(order.slice(1, 3)).to.deep.equal([hex(left.id), hex(right.id)].sort())
    expect(await all(store.topological(ChainId.B))).to.deep.equal(order.slice(5))
    expect(await all(store.topological(ChainId.A))).to.deep.equal(order.slice(0, 5))

    expect(await all(store.byType(BlockType.ModelManifest))).to.deep.equal([hex(m.id)])
    expect((await all(store.byType(BlockType.Note))).length).to.equal(4)
    expect((await store.byModelUnit(m.id, 1)).map(b => hex(b.id)).sort()).to.deep.equal([hex(l1.id), hex(l1b.id)].sort())
    expect(await store.byModelUnit(m.id, 2)).to.deep.equal([])
    expect(await store.counts()).to.deep.equal({ A: 5, B: 3, total: 8, orphans: 0 })
    expect((await store.verify()).ok).to.equal(true)
  })

  it('the same blocks added in another order give the same topological order elsewhere', async () => {
    const a = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 1n }, alice)
    const b = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 2n }, alice)
    const c = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [a.id, b.id], timestamp: 3n }, alice)
    const otherDir = await tempDir()
    const other = await openStore(otherDir)
    try {
      for (const blk of [c, b, a]) {
        await other.addBlock(await store.getEncoded(blk.id) as Uint8Array)
      }
      expect(await all(other.topological())).to.deep.equal(await all(store.topological()))
    } finally {
      await other.stop()
      await removeDir(otherDir)
    }
  })

  it('moves a block with its payload to another store via getEncoded + chunks', async () => {
    const payload = bytesOf(20_000, 9)
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload }, alice)
    const otherDir = await tempDir()
    const other = await openStore(otherDir)
    try {
      expect(await other.addBlock(await store.getEncoded(blk.id) as Uint8Array)).to.equal('added')
      for (const i of await other.missingChunks(blk.id)) {
        await other.putChunk(blk.id, i, await store.getChunk(blk.id, i))
      }
      expect((await other.get(blk.id))?.payloadComplete).to.equal(true)
      expect(await collect(other.readPayload(blk.id))).to.deep.equal(payload)
      expect((await other.verify()).ok).to.equal(true)
    } finally {
      await other.stop()
      await removeDir(otherDir)
    }
  })

  it('decodeBlock + addDecoded store what addBlock stores, check every rule, and take only what this store decoded', async () => {
    const payload = bytesOf(9000, 2)
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload }, alice)
    const encoded = await store.getEncoded(blk.id) as Uint8Array
    const otherDir = await tempDir()
    const other = await openStore(otherDir, { chunkSize: 4096 })
    try {
      const decoded = other.decodeBlock(encoded)
      expect(hex(decoded.id)).to.equal(hex(blk.id))
      expect(decoded.header.chain).to.equal(ChainId.A)
      expect(Object.isFrozen(decoded) && Object.isFrozen(decoded.header) && Object.isFrozen(decoded.header.parents)).to.equal(true)
      // an equal copy, or a block another store decoded, is not taken
      await expectCode(other.addDecoded({ ...decoded }), 'ERR_INVALID_ARGUMENT')
      await expectCode(other.addDecoded(store.decodeBlock(encoded)), 'ERR_INVALID_ARGUMENT')
      expect(await other.has(blk.id)).to.equal(false)
      expect(await other.addDecoded(decoded, payload)).to.equal('added')
      expect(await other.getEncoded(blk.id)).to.deep.equal(encoded)
      expect(await collect(other.readPayload(blk.id))).to.deep.equal(payload)
      expect(await other.addDecoded(decoded)).to.equal('duplicate')
      // the rules the decode leaves are checked by addDecoded, and counted as addBlock counts them
      const forged = new Uint8Array(encoded) // a copy (getEncoded gives a Buffer, whose slice() is a view)
      forged[forged.length - 1] ^= 0x01 // the signature is the envelope's last field
      const unsigned = other.decodeBlock(forged)
      await expectCode(other.addDecoded(unsigned), 'ERR_BLOCK_SIGNATURE')
      // what the bytes alone decide fails in decodeBlock
      expect(() => other.decodeBlock(encoded.subarray(0, encoded.length - 3))).to.throw().with.property('code', 'ERR_BLOCK_ENCODING')
      expect(other.metrics().rejected).to.deep.equal({ ERR_BLOCK_SIGNATURE: 1, ERR_BLOCK_ENCODING: 1 })
      expect(await other.has(unsigned.id)).to.equal(true) // the same id as blk: the forged copy changed the signature only
      expect(await other.getEncoded(blk.id)).to.deep.equal(encoded)
    } finally {
      await other.stop()
      await removeDir(otherDir)
    }
  })

  it('readPayload throws naming the block when a chunk is corrupt or missing; verify reports both', async () => {
    const payload = bytesOf(12_000, 4)
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload }, alice)
    const chunk1 = join(dir, 'chunks', hex(blk.header.chunkHashes[1]).slice(0, 2), hex(blk.header.chunkHashes[1]))
    const bytes = await readFile(chunk1)
    bytes[5] ^= 1
    await writeFile(chunk1, bytes)
    const err = await expectCode(collect(store.readPayload(blk.id)), 'ERR_CHUNK_HASH')
    expect(err.message).to.include(hex(blk.id))
    let report = await store.verify()
    expect(report.ok).to.equal(false)
    expect(report.issues.map(i => [i.id, i.code])).to.deep.equal([[hex(blk.id), 'ERR_CHUNK_HASH']])

    await rm(chunk1)
    const missing = await expectCode(collect(store.readPayload(blk.id)), 'ERR_CHUNK_MISSING')
    expect(missing.message).to.include(hex(blk.id))
    report = await store.verify()
    expect(report.issues.map(i => i.code)).to.include('ERR_CHUNK_MISSING')
  })

  it('verify reports a tampered header record', async () => {
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, fields: { n: { kind: 'string', value: 'hello' } } }, alice)
    await store.stop()
    // rewrite the header record with one byte of the signature flipped, behind the store's back
    const { ClassicLevel } = await import('classic-level')
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'index'), { keyEncoding: 'view', valueEncoding: 'view' })
    const key = Uint8Array.from([0x68, ...blk.id])
    const value = (await db.get(key)) as Uint8Array
    const tampered = value.slice()
    tampered[tampered.length - 1] ^= 1
    await db.put(key, tampered)
    await db.close()
    store = await openStore(dir)
    const report = await store.verify()
    expect(report.issues.map(i => [i.id, i.code])).to.deep.equal([[hex(blk.id), 'ERR_BLOCK_SIGNATURE']])
  })

  it('verify reports index entries that are missing or dangling', async () => {
    const a = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 1n }, alice)
    const b = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [a.id], timestamp: 2n }, alice)
    await store.stop()
    const { ClassicLevel } = await import('classic-level')
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'index'), { keyEncoding: 'view', valueEncoding: 'view' })
    await db.del(Uint8Array.from([0x70, ChainId.A, ...b.id])) // b's tip entry
    await db.put(Uint8Array.from([0x6b, ...a.id, ...new Uint8Array(32).fill(7)]), new Uint8Array(0)) // a child that does not exist
    await db.close()
    store = await openStore(dir)
    const report = await store.verify()
    expect(report.ok).to.equal(false)
    expect(report.issues.map(i => [i.id, i.code]).sort()).to.deep.equal([
      [hex(b.id), 'ERR_INDEX'],
      [hex(new Uint8Array(32).fill(7)), 'ERR_INDEX']
    ].sort())
  })

  it('gc removes chunk files no block refers to', async () => {
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: bytesOf(5000, 1) }, alice)
    await mkdir(join(dir, 'chunks', 'ab'), { recursive: true })
    await writeFile(join(dir, 'chunks', 'ab', 'ab'.repeat(32)), 'junk')
    const report = await store.verify()
    expect(report.ok).to.equal(true)
    expect(report).to.have.property('garbageChunks', 1)
    expect(await store.gc()).to.deep.equal({ removed: 1, bytes: 4 })
    expect(await readdir(join(dir, 'chunks', 'ab'))).to.deep.equal([])
    expect(await collect(store.readPayload(blk.id))).to.deep.equal(bytesOf(5000, 1))
  })

  it('dedupes identical chunks (content addressing)', async () => {
    const payload = new Uint8Array(4096 * 4)
    const blk = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload }, alice)
    expect(new Set(blk.header.chunkHashes.map(hex)).size).to.equal(1)
    expect(store.metrics().chunksWritten).to.equal(1)
    expect(await collect(store.readPayload(blk.id))).to.deep.equal(payload)
  })

  it('refuses to create a block on unknown parents or with a bad chunk size', async () => {
    await expectCode(store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [new Uint8Array(32)] }, alice), 'ERR_UNKNOWN_PARENT')
    await expectCode(store.createBlock({ chain: ChainId.A, type: BlockType.Note, chunkSize: 17 * 1024 * 1024 }, alice), 'ERR_INVALID_ARGUMENT')
    await expectCode(store.createBlock({ chain: ChainId.B, type: BlockType.Note }, alice), 'ERR_BLOCK_TYPE')
    expect((await store.counts()).total).to.equal(0)
  })

  it('serialises concurrent adds of the same and sibling blocks', async () => {
    const root = await store.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 1n }, alice)
    const blocks = await Promise.all(Array.from({ length: 20 }, async (_, i) => store.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [root.id], timestamp: BigInt(i + 10) }, alice)))
    const encoded = await store.getEncoded(blocks[0].id) as Uint8Array
    const results = await Promise.all([store.addBlock(encoded), store.addBlock(encoded)])
    expect(results).to.deep.equal(['duplicate', 'duplicate'])
    expect((await store.tips(ChainId.A)).length).to.equal(20)
    expect(await store.counts()).to.deep.equal({ A: 21, B: 0, total: 21, orphans: 0 })
    expect((await store.verify()).ok).to.equal(true)
  })
})
