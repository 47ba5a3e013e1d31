import { createHash, randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { createBlyDhtRecords, isLive, layerKeyDigest, layerProviderKey, nodeRecordKey, parseNodeRecordKey, RecordErrorCode, selectNodeRecord, verifyNodeRecord } from '../../src/net/records/index.ts'
import { decodeSignedNodeRecord, encodeSignedNodeRecord, NODE_RECORD_VERSION, signNodeRecord } from '../../src/protocols/node-record.ts'
import type { NodeRecord } from '../../src/protocols/node-record.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'

/** `p`: a promise (or a validator's void | Promise) or a function to call */
async function expectCode (p: unknown, code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? (p as () => unknown)() : p)
  } catch (err) {
    expect((err as { code?: string }).code, (err as Error).message).to.equal(code)
    return
  }
  expect.fail(`expected an error with code ${code}`)
}

describe('net/records: node record keys, validator and selector', () => {
  const modelId = new Uint8Array(randomBytes(32))
  let key: PrivateKey
  let peer: PeerId
  let otherKey: PrivateKey

  before(async () => {
    key = await generateKeyPair('Ed25519')
    peer = peerIdFromPrivateKey(key)
    otherKey = await generateKeyPair('Ed25519')
  })

  function recordOf (overrides: Partial<NodeRecord> = {}): NodeRecord {
    return {
      version: NODE_RECORD_VERSION,
      peerId: peer.toMultihash().bytes,
      addrs: [multiaddr('/ip4/127.0.0.1/tcp/4001').bytes],
      modelId,
      start: 4,
      end: 8,
      holdsEmbedding: false,
      holdsHead: true,
      movable: false,
      memoryBytes: 0,
      weightsVersion: new Uint8Array(0),
      backend: 'wasm',
      throughputMilli: 12_345,
      freeSessions: 3,
      queueLength: 1,
      seq: 1000,
      expiresAt: Date.now() + 60_000,
      ...overrides
    }
  }

  describe('keys', () => {
    it('node record keys parse back to the model and peer', () => {
      const k = nodeRecordKey(modelId, peer)
      expect(new TextDecoder().decode(k)).to.equal(`/bly/node/${Buffer.from(modelId).toString('hex')}/${peer.toString()}`)
      const parsed = parseNodeRecordKey(k)
      expect(parsed.modelId).to.deep.equal(modelId)
      expect(parsed.peerId.equals(peer)).to.equal(true)
    })

    it('rejects malformed node record keys', async () => {
      const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
      await expectCode(() => parseNodeRecordKey(enc('/bly/node/zz/' + peer.toString())), RecordErrorCode.BAD_KEY)
      await expectCode(() => parseNodeRecordKey(enc(`/bly/node/${'00'.repeat(32)}/notapeer`)), RecordErrorCode.BAD_KEY)
      await expectCode(() => parseNodeRecordKey(enc(`/bly/node/${'00'.repeat(32)}/${peer.toString()}/x`)), RecordErrorCode.BAD_KEY)
      await expectCode(() => parseNodeRecordKey(enc('/bly/other/x')), RecordErrorCode.BAD_KEY)
    })

    it('layer provider keys are sha-256(domain || model || uint32be layer), distinct per layer and model', () => {
      const expected = createHash('sha256')
        .update(Buffer.from('bly/layer/v1'))
        .update(modelId)
        .update(Buffer.from([0, 0, 1, 2]))
        .digest()
      expect(Buffer.from(layerKeyDigest(modelId, 258))).to.deep.equal(expected)
      const cid = layerProviderKey(modelId, 258)
      expect(cid.version).to.equal(1)
      expect(cid.code).to.equal(0x55)
      expect(cid.multihash.code).to.equal(0x12)
      expect(Buffer.from(cid.multihash.digest)).to.deep.equal(expected)
      const seen = new Set<string>()
      for (let l = 0; l < 64; l++) {
        seen.add(layerProviderKey(modelId, l).toString())
        seen.add(layerProviderKey(new Uint8Array(32), l).toString())
      }
      expect(seen.size).to.equal(128)
    })
  })

  describe('validator', () => {
    const { validator, selector } = createBlyDhtRecords()
    const keyOf = (): Uint8Array => nodeRecordKey(modelId, peer)

    it('accepts a good record and a fresh withdrawal tombstone', async () => {
      await validator(keyOf(), await signNodeRecord(recordOf(), key))
      const tombstone = await signNodeRecord(recordOf({ expiresAt: Date.now() }), key)
      await validator(keyOf(), tombstone)
      // valid for storage, but readers treat it as gone
      expect(isLive((await verifyNodeRecord(tombstone)).record)).to.equal(false)
    })

    it('rejects a bad signature', async () => {
      const signed = decodeSignedNodeRecord(await signNodeRecord(recordOf(), key))
      const sig = new Uint8Array(signed.signature)
      sig[0] ^= 1
      await expectCode(validator(keyOf(), encodeSignedNodeRecord({ record: signed.record, signature: sig })), RecordErrorCode.SIGNATURE)
    })

    it('rejects a record stored under another peer\'s or model\'s key', async () => {
      const otherPeer = peerIdFromPrivateKey(otherKey)
      const signed = await signNodeRecord(recordOf(), key)
      await expectCode(validator(nodeRecordKey(modelId, otherPeer), signed), RecordErrorCode.MISMATCH)
      await expectCode(validator(nodeRecordKey(new Uint8Array(32), peer), signed), RecordErrorCode.MISMATCH)
    })

    it('rejects expired records, far-future expiries and insane ranges', async () => {
      const now = Date.now()
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ expiresAt: now - 5 * 60_000 }), key)), RecordErrorCode.EXPIRED)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ expiresAt: now + 24 * 3600_000 }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ start: 8, end: 8 }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ end: 5000 }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ backend: 'GPU!' }), key)), RecordErrorCode.RANGE)
      await validator(keyOf(), await signNodeRecord(recordOf({ backend: 'webgpu', adapter: 'nvidia hopper NVIDIA H200' }), key))
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ adapter: 'tab\there' }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ adapter: 'x'.repeat(129) }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ seq: 0 }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), await signNodeRecord(recordOf({ addrs: [new Uint8Array([0xff, 0xff, 0xff])] }), key)), RecordErrorCode.RANGE)
      await expectCode(validator(keyOf(), new Uint8Array(5000)), RecordErrorCode.ENCODING)
      await expectCode(validator(keyOf(), new Uint8Array([1, 2, 3])), RecordErrorCode.ENCODING)
    })

    it('refuses a replay of an older record once a newer one was accepted for the key', async () => {
      const fresh = createBlyDhtRecords()
      const now = Date.now()
      await fresh.validator(keyOf(), await signNodeRecord(recordOf({ seq: 50, expiresAt: now + 60_000 }), key))
      await fresh.validator(keyOf(), await signNodeRecord(recordOf({ seq: 51, expiresAt: now }), key))
      await expectCode(fresh.validator(keyOf(), await signNodeRecord(recordOf({ seq: 50, expiresAt: now + 60_000 }), key)), RecordErrorCode.STALE)
      // other keys are unaffected, and a bounded cache forgets the oldest key first
      const small = createBlyDhtRecords({ replayCacheSize: 1 })
      await small.validator(keyOf(), await signNodeRecord(recordOf({ seq: 60 }), key))
      const otherPeer = peerIdFromPrivateKey(otherKey)
      await small.validator(nodeRecordKey(modelId, otherPeer), await signNodeRecord(recordOf({ seq: 1, peerId: otherPeer.toMultihash().bytes }), otherKey))
      await small.validator(keyOf(), await signNodeRecord(recordOf({ seq: 59 }), key))
    })

    it('rejects keys of unknown /bly/ segments unless an extra validator is given', async () => {
      const k = new TextEncoder().encode('/bly/layer/x')
      await expectCode(validator(k, new Uint8Array(1)), RecordErrorCode.BAD_KEY)
      const withExtra = createBlyDhtRecords({ extra: { layer: { validate: () => {}, select: () => 1 } } })
      await withExtra.validator(k, new Uint8Array(1))
      expect(await withExtra.selector(k, [new Uint8Array(1), new Uint8Array(2)])).to.equal(1)
    })

    it('the selector prefers the highest seq, then the latest expiry', async () => {
      const now = Date.now()
      const a = await signNodeRecord(recordOf({ seq: 10, expiresAt: now + 50_000 }), key)
      const b = await signNodeRecord(recordOf({ seq: 12, expiresAt: now + 10_000 }), key)
      const c = await signNodeRecord(recordOf({ seq: 11, expiresAt: now + 90_000 }), key)
      const d = await signNodeRecord(recordOf({ seq: 12, expiresAt: now + 20_000 }), key)
      expect(await selector(keyOf(), [a, b, c])).to.equal(1)
      expect(await selector(keyOf(), [a, b, c, d])).to.equal(3)
      expect(await selector(keyOf(), [new Uint8Array([9]), a])).to.equal(1)
      // a tombstone (newer seq, expiresAt = now) beats the live record it withdraws
      const tomb = await signNodeRecord(recordOf({ seq: 13, expiresAt: now }), key)
      expect(selectNodeRecord(keyOf(), [d, tomb])).to.equal(1)
    })
  })
})
