/**
 * Block ids and signatures with node:crypto: id = sha-256(header bytes),
 * signature = Ed25519 over utf8(SIGNING_DOMAIN) || id. Raw 32-byte keys are
 * wrapped into KeyObjects via their fixed DER (SPKI / PKCS#8) prefixes.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { ID_LENGTH, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH, SIGNING_DOMAIN } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import type { BlockSigner } from './types.ts'
import type { KeyObject } from 'node:crypto'

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows. */
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])
/** DER prefix of an Ed25519 PKCS#8 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])

/** sha-256 of `bytes` */
export function sha256 (bytes: Uint8Array): Uint8Array {
  const digest = createHash('sha256').update(bytes).digest()
  // a plain Uint8Array: Buffer#slice returns a view, a trap for callers
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength)
}

/** the block id of canonical header bytes */
export function blockId (headerBytes: Uint8Array): Uint8Array {
  return sha256(headerBytes)
}

/** the message a block signature covers: utf8(SIGNING_DOMAIN) || id */
export function signingMessage (id: Uint8Array): Uint8Array {
  if (id.length !== ID_LENGTH) {
    throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, `block id is ${id.length} bytes, expected ${ID_LENGTH}`)
  }
  const domain = new TextEncoder().encode(SIGNING_DOMAIN)
  const msg = new Uint8Array(domain.length + id.length)
  msg.set(domain)
  msg.set(id, domain.length)
  return msg
}

/** a KeyObject for a raw 32-byte Ed25519 public key */
export function ed25519PublicKey (raw: Uint8Array): KeyObject {
  if (raw.length !== PUBLIC_KEY_LENGTH) {
    throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, `Ed25519 public key is ${raw.length} bytes, expected ${PUBLIC_KEY_LENGTH}`)
  }
  const der = new Uint8Array(SPKI_ED25519_PREFIX.length + raw.length)
  der.set(SPKI_ED25519_PREFIX)
  der.set(raw, SPKI_ED25519_PREFIX.length)
  return createPublicKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'spki' })
}

/** a KeyObject for a raw 32-byte Ed25519 seed */
export function ed25519PrivateKey (seed: Uint8Array): KeyObject {
  const der = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32)
  der.set(PKCS8_ED25519_PREFIX)
  der.set(seed, PKCS8_ED25519_PREFIX.length)
  return createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' })
}

/** the raw 32-byte public key of a KeyObject (public or private) */
export function rawPublicKey (key: KeyObject): Uint8Array {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  const der = pub.export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - PUBLIC_KEY_LENGTH))
}

/**
 * Verify a block signature. `author` is a raw key or a KeyObject built from
 * it (callers verifying many blocks of one author may pass a cached KeyObject).
 */
export function verifyBlockSignature (author: Uint8Array | KeyObject, id: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_LENGTH) {
    return false
  }
  try {
    const key = author instanceof Uint8Array ? ed25519PublicKey(author) : author
    return verify(null, signingMessage(id), key, signature)
  } catch {
    return false
  }
}

/** sign a block id with `signer`, checking the result is a 64-byte signature */
export async function signBlockId (id: Uint8Array, signer: BlockSigner): Promise<Uint8Array> {
  const signature = await signer.sign(signingMessage(id))
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LENGTH) {
    throw new ChainError(ChainErrorCode.BLOCK_SIGNATURE, 'signer returned a malformed signature')
  }
  return signature
}

/**
 * A BlockSigner from a raw Ed25519 private key: the 32-byte seed, or the
 * 64-byte seed || publicKey form libp2p's `privateKey.raw` uses (the public
 * half is checked against the seed).
 */
export function createSignerFromSeed (seed: Uint8Array): BlockSigner {
  if (seed.length !== 32 && seed.length !== 64) {
    throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, `Ed25519 private key is ${seed.length} bytes, expected 32 or 64`)
  }
  const privateKey = ed25519PrivateKey(seed.subarray(0, 32))
  const publicKey = rawPublicKey(privateKey)
  if (seed.length === 64) {
    const given = seed.subarray(32)
    if (!publicKey.every((b, i) => b === given[i])) {
      throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, 'the public half of the 64-byte Ed25519 key does not match its seed')
    }
  }
  return {
    publicKey,
    sign: (message: Uint8Array): Uint8Array => new Uint8Array(sign(null, message, privateKey))
  }
}
