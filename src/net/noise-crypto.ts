/**
 * Noise's crypto with ChaCha20-Poly1305 from node:crypto done cheaper.
 * `@chainsafe/libp2p-noise`'s default already uses node:crypto for messages
 * of 1200 bytes and more, but hands it the raw 32-byte key on every message
 * (createCipheriv then builds a key object each time: ~9 us of a ~20 us
 * 16 KiB encryption) and returns the ciphertext of a multi-part plaintext
 * (yamux header + data) as a list of three buffers, each written to the
 * socket separately. This one keeps one KeyObject per session key and
 * returns one contiguous buffer. Same cipher, same wire bytes: it interoperates
 * with any Noise peer. Small messages keep noise's wasm path.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import type { KeyObject } from 'node:crypto'

const CIPHER = 'chacha20-poly1305'
const TAG_LENGTH = 16
/** below this noise's own (wasm) implementation is faster than node:crypto */
const NATIVE_MIN_BYTES = 1200

type Plaintext = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]

/** A Noise `crypto` for `noise({ crypto })`; each call gets its own key cache (per node). */
export function createNoiseCrypto (): ICryptoInterface {
  // noise keeps one key Uint8Array per CipherState and never mutates it
  const keys = new WeakMap<Uint8Array, KeyObject>()
  const keyObject = (k: Uint8Array): KeyObject => {
    let key = keys.get(k)
    if (key == null) {
      key = createSecretKey(k)
      keys.set(k, key)
    }
    return key
  }
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt (plaintext: Plaintext, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array {
      if (plaintext.byteLength < NATIVE_MIN_BYTES) {
        return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k).subarray()
      }
      const cipher = createCipheriv(CIPHER, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
      cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
      const out = Buffer.allocUnsafe(plaintext.byteLength + TAG_LENGTH)
      let offset = 0
      const parts: Iterable<Uint8Array> = plaintext instanceof Uint8Array ? [plaintext] : plaintext
      for (const part of parts) {
        const enc = cipher.update(part)
        out.set(enc, offset)
        offset += enc.byteLength
      }
      const final = cipher.final()
      out.set(final, offset)
      offset += final.byteLength
      out.set(cipher.getAuthTag(), offset)
      return out
    },
    chaCha20Poly1305Decrypt (ciphertext: Plaintext, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Uint8Array {
      if (ciphertext.byteLength < NATIVE_MIN_BYTES) {
        return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst).subarray()
      }
      const bytes = ciphertext instanceof Uint8Array ? ciphertext : ciphertext.subarray()
      const textLength = bytes.byteLength - TAG_LENGTH
      const decipher = createDecipheriv(CIPHER, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
      decipher.setAAD(ad, { plaintextLength: textLength })
      decipher.setAuthTag(bytes.subarray(textLength))
      const text = decipher.update(bytes.subarray(0, textLength))
      // throws when the tag does not match: noise aborts the connection
      const final = decipher.final()
      return final.byteLength === 0 ? text : Buffer.concat([text, final])
    }
  }
}
