/**
 * Issue 16, item 1, against a real `blyd` daemon: a libp2p peer gossips a
 * Note whose parent is the daemon's model manifest, declaring 8 MiB in chunks
 * of 4 MiB, whose chunk hashes name the two chunks of a block the daemon
 * already stores (4 MiB and 452 bytes). The daemon must refuse it, and
 * `blyd chain verify` must exit 0 afterwards.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { createSignerFromSeed } from '../../src/chain/index.ts'
import { IMPORT_CHUNK_SIZE } from '../../src/model/import/constants.ts'
import { CHAIN_TOPICS } from '../../src/net/index.ts'
import { header, signHeader } from '../chain/helpers.ts'
import { startMeshNode, waitFor } from '../mesh/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { startNode, stopAll } from '../net/helpers.ts'
import { ipcRequest, makeTempDir, removeDir, runCli, runJson } from './helpers.ts'
import type { MeshNode } from '../mesh/helpers.ts'
import type { TestNode } from '../net/helpers.ts'

const CHUNK = 4 * 1024 * 1024

function sha256 (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

describe('daemon: a gossiped header naming another block\'s chunks at other lengths', function () {
  this.timeout(120_000)
  let root: string
  let daemon: MeshNode | undefined
  const peers: TestNode[] = []

  before(async () => {
    root = await makeTempDir()
  })

  after(async () => {
    await stopAll(peers)
    await daemon?.daemon.kill()
    await removeDir(root)
  })

  it('is rejected, and `blyd chain verify` stays clean', async () => {
    const node = daemon = await startMeshNode(root, 'victim')
    const { modelId } = await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', node.dir])
    // a block of the daemon's with chunk 0 of 4 MiB and a last chunk of 452 bytes
    const payload = randomBytes(CHUNK + 452)
    const file = join(root, 'payload')
    await writeFile(file, payload)
    const put = await runJson(['chain', 'put', '--payload', file, '--data-dir', node.dir])
    expect(put.payloadSize).to.equal(String(CHUNK + 452))
    expect(put.chunks).to.equal(2)

    const attacker = createSignerFromSeed(new Uint8Array(32).fill(0x77))
    const poison = await signHeader(header({
      author: attacker.publicKey,
      parents: [Uint8Array.from(Buffer.from(modelId, 'hex'))],
      payloadSize: 2n * BigInt(CHUNK),
      chunkSize: IMPORT_CHUNK_SIZE,
      chunkHashes: [sha256(payload.subarray(0, CHUNK)), sha256(payload.subarray(CHUNK))]
    }), attacker)
    const poisonId = Buffer.from(poison.id).toString('hex')

    const bad = await startNode()
    peers.push(bad)
    await bad.net.libp2p.dial(multiaddr(node.addr))
    const pubsub = bad.net.libp2p.services.pubsub
    await waitFor('the daemon to subscribe to chain A at the peer', async () => pubsub.getSubscribers(CHAIN_TOPICS.A).some(p => p.toString() === node.peerId))
    const before = (await ipcRequest(node.daemon.socketPath, 'net.status')).gossip
    // straight onto the topic: the sender's own store never saw it
    await pubsub.publish(CHAIN_TOPICS.A, poison.encoded)
    const after = await waitFor('the daemon to refuse the header', async () => {
      const g = (await ipcRequest(node.daemon.socketPath, 'net.status')).gossip
      return (g.refusedByCode.ERR_CHUNK_LENGTH ?? 0) > (before.refusedByCode.ERR_CHUNK_LENGTH ?? 0) ? g : undefined
    })
    const verify = await runCli(['chain', 'verify', '--json', '--data-dir', node.dir])
    expect(verify.stderr).to.equal('')
    expect(verify.code).to.equal(0)
    const report = JSON.parse(verify.stdout)
    expect(report.issues).to.deep.equal([])
    expect(report.ok).to.equal(true)
    expect(after.refusedByCode.ERR_CHUNK_LENGTH - (before.refusedByCode.ERR_CHUNK_LENGTH ?? 0)).to.equal(1)
    // refused without penalty (Ignore): only a node holding the chunks can tell, a relayer could not
    expect(after.rejected - before.rejected).to.equal(0)
    expect(after.accepted - before.accepted).to.equal(0)
    const net = await ipcRequest(node.daemon.socketPath, 'net.status')
    expect(net.sync.offences).to.be.an('object')
    expect(net.sync).to.include.keys('bans', 'refused', 'orphanRequests', 'orphanParentsFetched', 'orphanParentsAbandoned')
    expect(net.penalties).to.be.an('array')
    const get = await runCli(['chain', 'get', poisonId, '--data-dir', node.dir])
    expect(get.code).to.not.equal(0)
    expect(get.stderr).to.include(`block ${poisonId} is not in the store`)
  })
})
