import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { blyConnectionEncrypter } from '../../src/net/libp2p-node.ts'
import { createNoiseCrypto } from '../../src/net/noise-crypto.ts'
import type { Libp2p } from '@libp2p/interface'

const PROTOCOL = '/bly/test-echo/1.0.0'

async function node (encrypter: any): Promise<Libp2p> {
  const n = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [encrypter],
    streamMuxers: [yamux()]
  })
  await n.handle(PROTOCOL, (stream) => {
    stream.addEventListener('message', (evt) => { stream.send(evt.data) })
  })
  return n
}

/** Send `data` over a fresh stream and collect exactly as many echoed bytes. */
async function echo (from: Libp2p, to: Libp2p, data: Uint8Array): Promise<Uint8Array> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], PROTOCOL)
  stream.maxReadBufferLength = 4 * data.byteLength
  const got = new Uint8Array(data.byteLength)
  let at = 0
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', (evt) => {
      const chunk = evt.data.subarray()
      got.set(chunk, at)
      at += chunk.byteLength
      if (at === data.byteLength) {
        resolve()
      }
    })
    stream.addEventListener('close', (evt) => { reject(evt.error ?? new Error('closed early')) })
  })
  stream.send(data)
  await done
  await stream.close()
  return got
}

describe('net/transport encrypter (noise crypto, corked writes)', () => {
  describe('createNoiseCrypto', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(12)
    const ad = randomBytes(32)

    for (const size of [16, 1199, 1200, 16 * 1024, 65519]) {
      it(`produces the same ciphertext as noise's default crypto (${size} bytes) and decrypts it`, () => {
        const ours = createNoiseCrypto()
        const plain = randomBytes(size)
        const enc = ours.chaCha20Poly1305Encrypt(plain, nonce, ad, key).subarray()
        const reference = defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key).subarray()
        expect(Buffer.from(enc).equals(Buffer.from(reference))).to.equal(true)
        expect(Buffer.from(ours.chaCha20Poly1305Decrypt(reference, nonce, ad, key).subarray()).equals(plain)).to.equal(true)
        // a second message on the same key goes through the cached key object
        const enc2 = ours.chaCha20Poly1305Encrypt(plain, nonce, ad, key).subarray()
        expect(Buffer.from(enc2).equals(Buffer.from(reference))).to.equal(true)
      })
    }

    it('rejects a tampered ciphertext', () => {
      const ours = createNoiseCrypto()
      const enc = Buffer.from(ours.chaCha20Poly1305Encrypt(randomBytes(16 * 1024), nonce, ad, key).subarray())
      enc[100] ^= 1
      expect(() => ours.chaCha20Poly1305Decrypt(enc, nonce, ad, key)).to.throw()
    })
  })

  describe('over TCP', function () {
    this.timeout(20_000)
    const nodes: Libp2p[] = []

    afterEach(async () => {
      await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
    })

    it('carries 16 KiB and 4 MiB messages intact between two blyd encrypters', async () => {
      const a = await node(blyConnectionEncrypter())
      const b = await node(blyConnectionEncrypter())
      nodes.push(a, b)
      for (const size of [16 * 1024, 4 * 1024 * 1024]) {
        const data = randomBytes(size)
        const back = await echo(a, b, data)
        expect(Buffer.from(back).equals(data)).to.equal(true)
      }
    })

    it('interoperates with stock noise in both directions', async () => {
      const ours = await node(blyConnectionEncrypter())
      const stock = await node(noise())
      nodes.push(ours, stock)
      const data = randomBytes(1024 * 1024 + 7)
      expect(Buffer.from(await echo(ours, stock, data)).equals(data)).to.equal(true)
      expect(Buffer.from(await echo(stock, ours, data)).equals(data)).to.equal(true)
    })
  })
})
