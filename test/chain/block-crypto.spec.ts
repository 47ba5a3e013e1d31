import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { blockId, createSignerFromSeed, signBlockId, signingMessage, verifyBlockSignature } from '../../src/chain/block-crypto.ts'
import { bytesOf, sha256 } from './helpers.ts'

describe('block crypto', () => {
  const headerBytes = bytesOf(300, 2)

  it('block id is sha-256 of the header bytes', () => {
    expect(blockId(headerBytes)).to.deep.equal(sha256(headerBytes))
  })

  it('signs the domain-separated id and verifies', async () => {
    const s = createSignerFromSeed(new Uint8Array(32).fill(4))
    const id = blockId(headerBytes)
    const sig = await signBlockId(id, s)
    expect(sig.length).to.equal(64)
    expect(verifyBlockSignature(s.publicKey, id, sig)).to.equal(true)
    expect(Buffer.from(signingMessage(id).subarray(0, 12)).toString()).to.equal('bly/block/v1')
  })

  it('rejects a flipped signature byte, another id, or another key', async () => {
    const s = createSignerFromSeed(new Uint8Array(32).fill(4))
    const other = createSignerFromSeed(new Uint8Array(32).fill(5))
    const id = blockId(headerBytes)
    const sig = await signBlockId(id, s)
    const flipped = sig.slice()
    flipped[10] ^= 1
    expect(verifyBlockSignature(s.publicKey, id, flipped)).to.equal(false)
    expect(verifyBlockSignature(s.publicKey, sha256(id), sig)).to.equal(false)
    expect(verifyBlockSignature(other.publicKey, id, sig)).to.equal(false)
    expect(verifyBlockSignature(s.publicKey, id, sig.subarray(1))).to.equal(false)
    expect(verifyBlockSignature(new Uint8Array(31), id, sig)).to.equal(false)
  })

  it('a signature over the bare id (no domain) does not verify', async () => {
    const s = createSignerFromSeed(new Uint8Array(32).fill(4))
    const id = blockId(headerBytes)
    const bare = await s.sign(id)
    expect(verifyBlockSignature(s.publicKey, id, bare)).to.equal(false)
  })

  it('accepts a libp2p Ed25519 private key (64-byte seed || pub) and interoperates', async () => {
    const key = await generateKeyPair('Ed25519')
    const s = createSignerFromSeed(key.raw)
    expect(s.publicKey).to.deep.equal(key.publicKey.raw)
    expect(createSignerFromSeed(key.raw.subarray(0, 32)).publicKey).to.deep.equal(key.publicKey.raw)
    const id = blockId(headerBytes)
    const ours = await signBlockId(id, s)
    expect(await key.publicKey.verify(signingMessage(id), ours)).to.equal(true)
    const theirs = await key.sign(signingMessage(id))
    expect(verifyBlockSignature(key.publicKey.raw, id, theirs)).to.equal(true)
  })

  it('rejects a 64-byte key whose public half does not match, and odd key sizes', () => {
    const raw = new Uint8Array(64).fill(1)
    expect(() => createSignerFromSeed(raw)).to.throw().with.property('code', 'ERR_INVALID_ARGUMENT')
    expect(() => createSignerFromSeed(new Uint8Array(31))).to.throw().with.property('code', 'ERR_INVALID_ARGUMENT')
  })

  it('refuses a signer that returns a malformed signature', async () => {
    const bad = { publicKey: new Uint8Array(32), sign: () => new Uint8Array(10) }
    try {
      await signBlockId(blockId(headerBytes), bad)
      expect.fail('should throw')
    } catch (err: any) {
      expect(err.code).to.equal('ERR_BLOCK_SIGNATURE')
    }
  })
})
