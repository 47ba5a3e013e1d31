/**
 * A block counts as payload-complete only when every chunk it names is stored
 * at the length its payload_size and chunk_size imply. A header that names
 * another block's chunks at other lengths (the "poisoning header" of issue 16)
 * is refused with ERR_CHUNK_LENGTH on every path that could mark it complete,
 * and `verify()` stays clean whichever order the blocks arrive in.
 */
import { expect } from 'aegir/chai'
import { ChainErrorCode } from '../../src/chain/errors.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { bytesOf, chunkHashes, collect, expectCode, header, hex, openStore, removeDir, signHeader, signer, tempDir } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { StoredBlock } from '../../src/chain/types.ts'

const CHUNK = 1024
const honest = signer(1)
const attacker = signer(9)
/** the honest payload: chunk 0 of 1024 bytes, a last chunk of 452 */
const PAYLOAD = bytesOf(CHUNK + 452, 5)

describe('chain store: chunk lengths (a header naming another block\'s chunks)', () => {
  let dir: string
  let store: ChainStore
  let manifest: StoredBlock
  /** the honest block whose payload is PAYLOAD, as bytes another store would send */
  let honestBlock: { id: Uint8Array, encoded: Uint8Array }
  /** a Note whose parent is the manifest, 2048 bytes in chunks of 1024 named by the honest block's hashes */
  let poison: { id: Uint8Array, encoded: Uint8Array }

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir, { chunkSize: CHUNK })
    manifest = await store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, payload: bytesOf(3000, 2), chunkSize: CHUNK }, honest)
    honestBlock = await signHeader(header({
      author: honest.publicKey,
      parents: [manifest.id],
      payloadSize: BigInt(PAYLOAD.length),
      chunkSize: CHUNK,
      chunkHashes: chunkHashes(PAYLOAD, CHUNK)
    }), honest)
    poison = await signHeader(header({
      author: attacker.publicKey,
      parents: [manifest.id],
      timestamp: 1_700_000_000_001n,
      payloadSize: 2048n,
      chunkSize: CHUNK,
      chunkHashes: chunkHashes(PAYLOAD, CHUNK)
    }), attacker)
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  async function expectClean (): Promise<void> {
    const report = await store.verify()
    expect(report.issues).to.deep.equal([])
    expect(report.ok).to.equal(true)
  }

  it('refuses the header when the chunks it names are stored at other lengths, and counts it', async () => {
    expect(await store.addBlock(honestBlock.encoded, PAYLOAD)).to.equal('added')
    const err = await expectCode(store.addBlock(poison.encoded), ChainErrorCode.CHUNK_LENGTH)
    expect(err.message).to.include(hex(poison.id))
    expect(err.message).to.include('452 bytes')
    expect(await store.has(poison.id)).to.equal(false)
    expect(store.metrics().rejected).to.deep.equal({ [ChainErrorCode.CHUNK_LENGTH]: 1 })
    expect(await collect(store.readPayload(honestBlock.id))).to.deep.equal(PAYLOAD)
    await expectClean()
  })

  it('a header stored before the chunks it names arrive never turns complete, is never served, and verify stays clean', async () => {
    expect(await store.addBlock(poison.encoded)).to.equal('added')
    expect(await store.missingChunks(poison.id)).to.deep.equal([0, 1])
    // the honest block brings chunk 0 (1024 bytes) and its last chunk (452 bytes)
    expect(await store.addBlock(honestBlock.encoded, PAYLOAD)).to.equal('added')
    expect((await store.get(honestBlock.id))?.payloadComplete).to.equal(true)

    expect((await store.get(poison.id))?.payloadComplete).to.equal(false)
    // sync asks which chunks to fetch: none can ever complete it
    await expectCode(store.missingChunks(poison.id), ChainErrorCode.CHUNK_LENGTH)
    // chunk 0 has the right length and hash, but the block can never be complete: refused
    await expectCode(store.putChunk(poison.id, 0, PAYLOAD.subarray(0, CHUNK)), ChainErrorCode.CHUNK_LENGTH)
    expect((await store.get(poison.id))?.payloadComplete).to.equal(false)
    // the honest block's 452-byte chunk is not chunk 1 of this block: never read or served as such
    await expectCode(store.getChunk(poison.id, 1), ChainErrorCode.CHUNK_LENGTH)
    await expectCode(collect(store.readPayload(poison.id)), ChainErrorCode.CHUNK_LENGTH)

    const report = await store.verify()
    expect(report.issues).to.deep.equal([])
    expect(report.unsatisfiableBlocks).to.equal(1)
  })

  it('putChunk marks a block complete only when its other chunks are stored at its lengths', async () => {
    // a Note whose chunk 1 is the honest block's chunk 0 (1024 bytes) at 1024 bytes: a real, satisfiable block
    const second = bytesOf(CHUNK, 7)
    const sharing = new Uint8Array([...second, ...PAYLOAD.subarray(0, CHUNK)])
    const shared = await signHeader(header({ author: attacker.publicKey, parents: [manifest.id], payloadSize: BigInt(sharing.length), chunkSize: CHUNK, chunkHashes: chunkHashes(sharing, CHUNK) }), attacker)
    expect(await store.addBlock(honestBlock.encoded, PAYLOAD)).to.equal('added')
    expect(await store.addBlock(shared.encoded)).to.equal('added')
    expect(await store.missingChunks(shared.id)).to.deep.equal([0])
    await store.putChunk(shared.id, 0, second)
    expect((await store.get(shared.id))?.payloadComplete).to.equal(true)
    expect(await collect(store.readPayload(shared.id))).to.deep.equal(sharing)
    await expectClean()
  })

  it('an orphan naming chunks stored at other lengths is rejected when its parent arrives', async () => {
    const other = await openStore(await tempDir(), { chunkSize: CHUNK })
    try {
      const parent = await other.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 5n }, honest)
      const orphan = await signHeader(header({
        author: attacker.publicKey,
        parents: [parent.id],
        payloadSize: 2048n,
        chunkSize: CHUNK,
        chunkHashes: chunkHashes(PAYLOAD, CHUNK)
      }), attacker)
      expect(await store.addBlock(orphan.encoded)).to.equal('orphaned')
      expect(await store.addBlock(honestBlock.encoded, PAYLOAD)).to.equal('added')
      expect(await store.addBlock(await other.getEncoded(parent.id) as Uint8Array)).to.equal('added')
      expect(await store.has(orphan.id)).to.equal(false)
      expect(store.metrics().orphansRejected).to.equal(1)
      expect(store.metrics().rejected).to.deep.equal({ [ChainErrorCode.CHUNK_LENGTH]: 1 })
      await expectClean()
    } finally {
      await other.stop()
      await removeDir(other.path)
    }
  })

  it('refuses a header that names one hash at two lengths', async () => {
    const [h0, h1] = chunkHashes(PAYLOAD, CHUNK)
    expect(h0).to.not.deep.equal(h1)
    // chunk 0 (1024 bytes) and the last chunk (452 bytes) under the same hash
    const twin = await signHeader(header({ author: attacker.publicKey, payloadSize: BigInt(PAYLOAD.length), chunkSize: CHUNK, chunkHashes: [h1, h1] }), attacker)
    const err = await expectCode(store.addBlock(twin.encoded), ChainErrorCode.CHUNK_LENGTH)
    expect(err.message).to.include('same hash')
    // the same hash at the same length is an ordinary payload (two equal chunks)
    const zeros = new Uint8Array(2 * CHUNK)
    const equal = await signHeader(header({ author: attacker.publicKey, payloadSize: BigInt(zeros.length), chunkSize: CHUNK, chunkHashes: chunkHashes(zeros, CHUNK) }), attacker)
    expect(await store.addBlock(equal.encoded, zeros)).to.equal('added')
    await expectClean()
  })

  it('an orphan parked from a Buffer keeps its header when the caller reuses the buffer', async () => {
    const other = await openStore(await tempDir(), { chunkSize: CHUNK })
    try {
      const parent = await other.createBlock({ chain: ChainId.A, type: BlockType.Note, timestamp: 5n }, honest)
      const child = await other.createBlock({ chain: ChainId.A, type: BlockType.Note, parents: [parent.id], timestamp: 6n }, honest)
      const childBytes = await other.getEncoded(child.id) as Uint8Array
      // a network read buffer: the orphan arrives in it, then the buffer is reused
      const buffer = Buffer.alloc(childBytes.length)
      buffer.set(childBytes)
      expect(await store.addBlock(buffer)).to.equal('orphaned')
      buffer.fill(0)
      expect(await store.addBlock(await other.getEncoded(parent.id) as Uint8Array)).to.equal('added')
      const stored = await store.get(child.id)
      expect(stored?.header.parents.map(hex)).to.deep.equal([hex(parent.id)])
      expect(await store.getEncoded(child.id)).to.deep.equal(childBytes)
      await expectClean()
    } finally {
      await other.stop()
      await removeDir(other.path)
    }
  })
})
