/**
 * The AEAD transport's cryptography (DirectTransport.AEAD; wire in
 * protocols/infer.md, "Direct channel"): the handshake messages, the key
 * schedule and the record sealer / opener.
 *
 * Handshake over plain TCP: the client sends HELLO (magic 'blyA', version,
 * the offer's identity, a 32-byte random nonce, an ephemeral X25519 public
 * key); the stage answers its own nonce and X25519 key. Both derive, with
 * HKDF-SHA256 over (psk || X25519 shared secret), salt = client nonce ||
 * server nonce, one AES-128-GCM key and 4-byte nonce prefix per direction
 * (info strings name the protocol and the direction). The first record each
 * way proves key possession: the client's carries the offer's token, the
 * stage's one accept byte.
 *
 * Records: [plaintext length u32 LE][ciphertext][tag 16]; the length header
 * is the additional data, the 96-bit nonce is the direction's prefix ||
 * 64-bit big-endian record counter (0, 1, 2, ... never reused; a direction
 * that reaches its limit closes the channel).
 */
import { createCipheriv, createDecipheriv, createPublicKey, createSecretKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto'
import { AEAD_CIPHER, AEAD_HEADER_BYTES, AEAD_IV_PREFIX_BYTES, AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES, IDENTITY_BYTES } from './constants.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import type { DecipherGCM, KeyObject } from 'node:crypto'

/** 'blyA' */
const MAGIC = [0x62, 0x6c, 0x79, 0x41] as const
export const AEAD_HELLO_VERSION = 1
const X25519_KEY_BYTES = 32
/**
 * Bytes per cipher update when sealing: node's update() allocates a zeroed
 * output buffer, then a second one it copies the output into; at 16 KiB
 * both are recycled, cache-hot heap memory, at 1 MiB they are fresh pages
 * (measured ~260 vs ~300-380 us per MiB; 64 KiB in between).
 */
export const AEAD_CHUNK_BYTES = 16 * 1024
/** DER SubjectPublicKeyInfo prefix of a raw X25519 public key */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
export const AEAD_CLIENT_HELLO_BYTES = MAGIC.length + 1 + IDENTITY_BYTES + AEAD_NONCE_BYTES + X25519_KEY_BYTES
export const AEAD_SERVER_HELLO_BYTES = AEAD_NONCE_BYTES + X25519_KEY_BYTES
const INFO_C2S = 'bly/infer-direct aead v1 client->stage'
const INFO_S2C = 'bly/infer-direct aead v1 stage->client'

/** One side's handshake half: a fresh nonce and X25519 key pair. */
export interface AeadHandshakeHalf {
  nonce: Buffer
  publicKey: Buffer
  privateKey: KeyObject
}

export function handshakeHalf (): AeadHandshakeHalf {
  const pair = generateKeyPairSync('x25519')
  const spki = pair.publicKey.export({ format: 'der', type: 'spki' })
  return { nonce: randomBytes(AEAD_NONCE_BYTES), publicKey: spki.subarray(X25519_SPKI_PREFIX.length), privateKey: pair.privateKey }
}

export function encodeAeadClientHello (identity: Uint8Array, half: AeadHandshakeHalf): Buffer {
  const out = Buffer.allocUnsafe(AEAD_CLIENT_HELLO_BYTES)
  out.set(MAGIC, 0)
  out[MAGIC.length] = AEAD_HELLO_VERSION
  let at = MAGIC.length + 1
  out.set(identity, at)
  at += IDENTITY_BYTES
  out.set(half.nonce, at)
  at += AEAD_NONCE_BYTES
  out.set(half.publicKey, at)
  return out
}

/** identity, nonce and public key of a well-formed client hello, or undefined. */
export function decodeAeadClientHello (bytes: Uint8Array): { identity: Uint8Array, nonce: Uint8Array, publicKey: Uint8Array } | undefined {
  if (bytes.length !== AEAD_CLIENT_HELLO_BYTES || MAGIC.some((b, i) => bytes[i] !== b) || bytes[MAGIC.length] !== AEAD_HELLO_VERSION) {
    return undefined
  }
  let at = MAGIC.length + 1
  const identity = bytes.subarray(at, at + IDENTITY_BYTES)
  at += IDENTITY_BYTES
  const nonce = bytes.subarray(at, at + AEAD_NONCE_BYTES)
  at += AEAD_NONCE_BYTES
  return { identity, nonce, publicKey: bytes.subarray(at, at + X25519_KEY_BYTES) }
}

export function encodeAeadServerHello (half: AeadHandshakeHalf): Buffer {
  return Buffer.concat([half.nonce, half.publicKey])
}

export function decodeAeadServerHello (bytes: Uint8Array): { nonce: Uint8Array, publicKey: Uint8Array } {
  return { nonce: bytes.subarray(0, AEAD_NONCE_BYTES), publicKey: bytes.subarray(AEAD_NONCE_BYTES, AEAD_SERVER_HELLO_BYTES) }
}

/** One direction's key and nonce prefix. */
export interface AeadDirectionKey {
  key: KeyObject
  ivPrefix: Buffer
}

export interface AeadKeys {
  clientToStage: AeadDirectionKey
  stageToClient: AeadDirectionKey
}

/**
 * Both directions' keys from the offer's PSK, our half and the peer's
 * nonce and public key. Throws AUTH_FAILED for a public key X25519 rejects.
 */
export function deriveAeadKeys (psk: Uint8Array, own: AeadHandshakeHalf, peer: { nonce: Uint8Array, publicKey: Uint8Array }, isClient: boolean): AeadKeys {
  let shared: Buffer
  try {
    const peerKey = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peer.publicKey]), format: 'der', type: 'spki' })
    shared = diffieHellman({ privateKey: own.privateKey, publicKey: peerKey })
  } catch (err) {
    throw new DirectChannelError(DirectChannelErrorCode.AUTH_FAILED, 'direct channel handshake: bad X25519 public key', { cause: err })
  }
  const ikm = Buffer.concat([psk, shared])
  const salt = isClient ? Buffer.concat([own.nonce, peer.nonce]) : Buffer.concat([peer.nonce, own.nonce])
  const direction = (info: string): AeadDirectionKey => {
    const okm = Buffer.from(hkdfSync('sha256', ikm, salt, info, AEAD_KEY_BYTES + AEAD_IV_PREFIX_BYTES))
    return { key: createSecretKey(okm.subarray(0, AEAD_KEY_BYTES)), ivPrefix: okm.subarray(AEAD_KEY_BYTES) }
  }
  return { clientToStage: direction(INFO_C2S), stageToClient: direction(INFO_S2C) }
}

/** The 12-byte nonce of record `counter` in a direction. */
export function aeadNonce (ivPrefix: Uint8Array, counter: number): Buffer {
  const iv = Buffer.allocUnsafe(12)
  iv.set(ivPrefix, 0)
  iv.writeUInt32BE(Math.floor(counter / 2 ** 32), 4)
  iv.writeUInt32BE(counter >>> 0, 8)
  return iv
}

/** Seals one direction's records under consecutive nonces. */
export class AeadSealer {
  private readonly key: AeadDirectionKey
  private readonly maxRecords: number
  /** records sealed so far (= the next record's counter) */
  counter: number

  constructor (key: AeadDirectionKey, maxRecords: number) {
    this.key = key
    this.maxRecords = maxRecords
    this.counter = 0
  }

  /**
   * Seal the plaintext `parts` as one record, handing `write` the header,
   * each piece of ciphertext (at most AEAD_CHUNK_BYTES each), then the tag. Throws RECORDS_EXHAUSTED once the
   * limit is reached (nothing written).
   */
  seal (parts: Uint8Array[], write: (buf: Buffer) => void): void {
    if (this.counter >= this.maxRecords) {
      throw new DirectChannelError(DirectChannelErrorCode.RECORDS_EXHAUSTED, `direct channel sealed its ${this.maxRecords} records`)
    }
    let len = 0
    for (const p of parts) {
      len += p.byteLength
    }
    const header = Buffer.allocUnsafe(AEAD_HEADER_BYTES)
    header.writeUInt32LE(len, 0)
    const cipher = createCipheriv(AEAD_CIPHER, this.key.key, aeadNonce(this.key.ivPrefix, this.counter++), { authTagLength: AEAD_TAG_BYTES })
    cipher.setAAD(header)
    write(header)
    for (const p of parts) {
      for (let at = 0; at < p.byteLength; at += AEAD_CHUNK_BYTES) {
        write(cipher.update(p.subarray(at, at + AEAD_CHUNK_BYTES)))
      }
    }
    cipher.final()
    write(cipher.getAuthTag())
  }
}

/**
 * Opens one direction's records, in order, under consecutive nonces:
 * `begin()` per record, then its ciphertext through the returned decipher
 * (in pieces, as it arrives), then `finish()` with the tag, which throws
 * unless the record is authentic. Plaintext must not be used before.
 */
export class AeadOpener {
  private readonly key: AeadDirectionKey
  private readonly maxRecords: number
  /** records begun so far (= the next record's counter) */
  counter: number

  constructor (key: AeadDirectionKey, maxRecords: number) {
    this.key = key
    this.maxRecords = maxRecords
    this.counter = 0
  }

  /** The decipher of the next record, whose length header is `header`. Throws RECORDS_EXHAUSTED. */
  begin (header: Uint8Array): DecipherGCM {
    if (this.counter >= this.maxRecords) {
      throw new DirectChannelError(DirectChannelErrorCode.RECORDS_EXHAUSTED, `direct channel opened its ${this.maxRecords} records`)
    }
    const decipher = createDecipheriv(AEAD_CIPHER, this.key.key, aeadNonce(this.key.ivPrefix, this.counter++), { authTagLength: AEAD_TAG_BYTES })
    decipher.setAAD(header)
    return decipher
  }

  /** Verify the record's `tag`; throws AUTH_FAILED. */
  finish (decipher: DecipherGCM, tag: Uint8Array): void {
    decipher.setAuthTag(tag)
    try {
      decipher.final()
    } catch (err) {
      throw new DirectChannelError(DirectChannelErrorCode.AUTH_FAILED, `direct channel record ${this.counter - 1} failed authentication`, { cause: err })
    }
  }

  /** A whole record at once (`sealed`: ciphertext then tag): its plaintext, once authentic. */
  open (header: Uint8Array, sealed: Uint8Array): Buffer {
    const ctLen = sealed.byteLength - AEAD_TAG_BYTES
    const decipher = this.begin(header)
    const plain = decipher.update(sealed.subarray(0, ctLen))
    this.finish(decipher, sealed.subarray(ctLen))
    return plain
  }
}
