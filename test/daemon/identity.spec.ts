import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyToProtobuf, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { IdentityError } from '../../src/daemon/errors.ts'
import { loadIdentity, loadOrCreateIdentity } from '../../src/daemon/identity.ts'
import { makeTempDir, rejection, removeDir } from './helpers.ts'

describe('daemon identity', () => {
  let dir: string

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  it('creates an Ed25519 key with mode 0600 and loads the same one back', async () => {
    const created = await loadOrCreateIdentity(dir)
    expect(created.created).to.equal(true)
    expect(created.publicKey).to.have.length(32)
    expect((await stat(join(dir, 'identity.key'))).mode & 0o777).to.equal(0o600)

    const again = await loadOrCreateIdentity(dir)
    expect(again.created).to.equal(false)
    expect(again.peerId.toString()).to.equal(created.peerId.toString())

    const msg = new TextEncoder().encode('block id')
    const sig = await again.signer.sign(msg)
    expect(await publicKeyFromRaw(created.signer.publicKey).verify(msg, sig)).to.equal(true)
  })

  it('refuses a key file readable by others', async () => {
    await loadOrCreateIdentity(dir)
    await chmod(join(dir, 'identity.key'), 0o644)
    const err = await rejection(loadOrCreateIdentity(dir))
    expect(err).to.be.instanceOf(IdentityError)
    expect(err.message).to.include('0644').and.include('chmod 600')
  })

  it('refuses garbage and non-Ed25519 keys without replacing them', async () => {
    const file = join(dir, 'identity.key')
    await writeFile(file, 'not a key', { mode: 0o600 })
    expect((await rejection(loadOrCreateIdentity(dir))).message).to.include('not a valid libp2p private key')
    expect(await readFile(file, 'utf8')).to.equal('not a key')

    await writeFile(file, privateKeyToProtobuf(await generateKeyPair('secp256k1')), { mode: 0o600 })
    expect((await rejection(loadIdentity(dir))).message).to.include('needs Ed25519')
  })

  it('says how to create a missing identity', async () => {
    expect((await rejection(loadIdentity(dir))).message).to.include('no identity key')
  })
})
