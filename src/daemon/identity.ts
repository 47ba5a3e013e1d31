/**
 * The node's Ed25519 identity: one key for its libp2p PeerId and for the
 * blocks it authors. Stored as the libp2p private-key protobuf in
 * `DIR/identity.key`, mode 0600.
 */
import { lstat, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { writeFileAtomic } from './atomic-file.ts'
import { IDENTITY_FILE_NAME, PRIVATE_FILE_MODE } from './constants.ts'
import { IdentityError } from './errors.ts'
import type { BlockSigner } from '../chain/types.ts'

export type PrivateKey = ReturnType<typeof privateKeyFromProtobuf>
export type Ed25519PrivateKey = Extract<PrivateKey, { type: 'Ed25519' }>
export type PeerId = ReturnType<typeof peerIdFromPrivateKey>

export interface Identity {
  privateKey: Ed25519PrivateKey
  peerId: PeerId
  /** raw 32-byte Ed25519 public key */
  publicKey: Uint8Array
  /** signs blocks with the identity key */
  signer: BlockSigner
  /** the key file */
  file: string
}

export function identityFile (dataDir: string): string {
  return join(dataDir, IDENTITY_FILE_NAME)
}

function toIdentity (privateKey: Ed25519PrivateKey, file: string): Identity {
  const publicKey = privateKey.publicKey.raw
  return {
    privateKey,
    peerId: peerIdFromPrivateKey(privateKey),
    publicKey,
    signer: {
      publicKey,
      sign: async (message: Uint8Array): Promise<Uint8Array> => privateKey.sign(message)
    },
    file
  }
}

/** Load the identity of `dataDir`; throws IdentityError when absent, too open or not an Ed25519 key. */
export async function loadIdentity (dataDir: string): Promise<Identity> {
  const file = identityFile(dataDir)
  let stat
  try {
    stat = await lstat(file)
  } catch (err: any) {
    if (err.code === 'ENOENT') {
      throw new IdentityError(`no identity key at ${file} (run "blyd start" once to create it)`, { cause: err })
    }
    throw new IdentityError(`cannot read identity key ${file} (${err.code ?? err.message})`, { cause: err })
  }
  if (!stat.isFile()) {
    throw new IdentityError(`identity key ${file} is not a regular file`)
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new IdentityError(`identity key ${file} has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}; it must be readable by its owner only (chmod 600 ${file})`)
  }
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) {
    throw new IdentityError(`identity key ${file} is owned by uid ${stat.uid}, not by this user`)
  }
  const bytes = await readFile(file)
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err: any) {
    throw new IdentityError(`identity key ${file} is not a valid libp2p private key (${err.message})`, { cause: err })
  }
  if (key.type !== 'Ed25519') {
    throw new IdentityError(`identity key ${file} is a ${key.type} key; blyd needs Ed25519`)
  }
  return toIdentity(key, file)
}

/** Load the identity of `dataDir`, creating a fresh Ed25519 key when there is none. */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity & { created: boolean }> {
  const file = identityFile(dataDir)
  try {
    return { ...(await loadIdentity(dataDir)), created: false }
  } catch (err: any) {
    if (!(err instanceof IdentityError) || err.cause == null || (err.cause as { code?: string }).code !== 'ENOENT') {
      throw err
    }
  }
  const key = await generateKeyPair('Ed25519')
  await writeFileAtomic(file, privateKeyToProtobuf(key), PRIVATE_FILE_MODE)
  return { ...toIdentity(key, file), created: true }
}
