import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { decodeNodeRecord, decodeSignedNodeRecord, encodeNodeRecord, encodeSignedNodeRecord, NODE_RECORD_SIGNATURE_LENGTH, NODE_RECORD_VERSION, openSignedNodeRecord, recordPeerId, signNodeRecord } from '../../src/protocols/node-record.ts'
import { PbWriter, WireType } from '../../src/protocols/pb-wire.ts'
import { RecordErrorCode } from '../../src/protocols/record-errors.ts'
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

describe('protocols/node-record codec', () => {
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

  describe('codec', () => {
    it('round-trips every field and is canonical', () => {
      const r = recordOf({ start: 0, holdsEmbedding: true, movable: true, memoryBytes: 17_179_869_184, weightsVersion: new Uint8Array(randomBytes(32)) })
      const bytes = encodeNodeRecord(r)
      const back = decodeNodeRecord(bytes)
      expect(back).to.deep.equal({ ...r, addrs: r.addrs.map(a => new Uint8Array(a)) })
      expect(encodeNodeRecord(back)).to.deep.equal(bytes)
    })

    it('rejects unknown fields, explicit defaults, bad flags and trailing garbage', async () => {
      const bytes = encodeNodeRecord(recordOf())
      const unknown = new Uint8Array([...bytes, ...new PbWriter().tag(99, WireType.Varint).uint32(1).finish()])
      await expectCode(() => decodeNodeRecord(unknown), RecordErrorCode.ENCODING)
      // start = 0 written explicitly is not the canonical form
      const zeroStart = encodeNodeRecord(recordOf({ start: 0 }))
      const w = new PbWriter()
      const explicit = new Uint8Array([...zeroStart, ...w.tag(5, WireType.Varint).uint32(0).finish()])
      await expectCode(() => decodeNodeRecord(explicit), RecordErrorCode.ENCODING)
      const badFlags = new Uint8Array([...encodeNodeRecord(recordOf({ holdsHead: false })), ...new PbWriter().tag(7, WireType.Varint).uint32(4).finish()])
      await expectCode(() => decodeNodeRecord(badFlags), RecordErrorCode.ENCODING)
      await expectCode(() => decodeNodeRecord(bytes.subarray(0, bytes.length - 1)), RecordErrorCode.ENCODING)
      await expectCode(() => encodeNodeRecord(recordOf({ modelId: new Uint8Array(31) })), RecordErrorCode.ENCODING)
      await expectCode(() => encodeNodeRecord(recordOf({ throughputMilli: 1.5 })), RecordErrorCode.ENCODING)
    })

    it('carries the weights version (field 15, 32 bytes) or leaves it out, and refuses another length', async () => {
      const weightsVersion = new Uint8Array(randomBytes(32))
      const bytes = encodeNodeRecord(recordOf({ weightsVersion }))
      expect(decodeNodeRecord(bytes).weightsVersion).to.deep.equal(weightsVersion)
      // not said: no field 15 at all
      const plain = encodeNodeRecord(recordOf())
      expect(bytes.length - plain.length).to.equal(2 + 32)
      expect(decodeNodeRecord(plain).weightsVersion).to.have.length(0)
      await expectCode(() => encodeNodeRecord(recordOf({ weightsVersion: new Uint8Array(31) })), RecordErrorCode.ENCODING)
      const short = new Uint8Array([...plain, ...new PbWriter().tag(15, WireType.LengthDelimited).bytes(new Uint8Array(31)).finish()])
      await expectCode(() => decodeNodeRecord(short), RecordErrorCode.ENCODING)
      // an empty field 15 written explicitly is not canonical
      const empty = new Uint8Array([...plain, ...new PbWriter().tag(15, WireType.LengthDelimited).bytes(new Uint8Array(0)).finish()])
      await expectCode(() => decodeNodeRecord(empty), RecordErrorCode.ENCODING)
    })

    it('carries the GPU adapter (field 16, UTF-8) or leaves it out', async () => {
      const adapter = 'nvidia hopper NVIDIA H200'
      const bytes = encodeNodeRecord(recordOf({ backend: 'webgpu', adapter }))
      expect(decodeNodeRecord(bytes)).to.include({ backend: 'webgpu', adapter })
      const plain = encodeNodeRecord(recordOf({ backend: 'webgpu' }))
      // tag 16 takes two bytes, then one length byte
      expect(bytes.length - plain.length).to.equal(3 + adapter.length)
      expect(decodeNodeRecord(plain).adapter).to.equal(undefined)
      // empty = not said: no field at all, and an explicit empty field is not canonical
      expect(encodeNodeRecord(recordOf({ backend: 'webgpu', adapter: '' }))).to.deep.equal(plain)
      const empty = new Uint8Array([...plain, ...new PbWriter().tag(16, WireType.LengthDelimited).bytes(new Uint8Array(0)).finish()])
      await expectCode(() => decodeNodeRecord(empty), RecordErrorCode.ENCODING)
      const badUtf8 = new Uint8Array([...plain, ...new PbWriter().tag(16, WireType.LengthDelimited).bytes(new Uint8Array([0xff, 0xfe])).finish()])
      await expectCode(() => decodeNodeRecord(badUtf8), RecordErrorCode.ENCODING)
    })

    it('signs with the peer key and detects tampering', async () => {
      const signed = await signNodeRecord(recordOf(), key)
      const opened = await openSignedNodeRecord(signed)
      expect(opened.peerId.equals(peer)).to.equal(true)
      expect(opened.record.end).to.equal(8)

      const msg = decodeSignedNodeRecord(signed)
      const tampered = encodeNodeRecord({ ...decodeNodeRecord(msg.record), queueLength: 0 })
      await expectCode(openSignedNodeRecord(encodeSignedNodeRecord({ record: tampered, signature: msg.signature })), RecordErrorCode.SIGNATURE)
      // a key that is not the record's peer cannot sign it
      await expectCode(signNodeRecord(recordOf(), otherKey), RecordErrorCode.MISMATCH)
    })
  })

  describe('signed envelope', () => {
    it('round-trips, and rejects a short signature, a missing part and trailing bytes', async () => {
      const signed = await signNodeRecord(recordOf(), key)
      const msg = decodeSignedNodeRecord(signed)
      expect(msg.signature).to.have.length(NODE_RECORD_SIGNATURE_LENGTH)
      expect(encodeSignedNodeRecord(msg)).to.deep.equal(signed)
      await expectCode(() => encodeSignedNodeRecord({ record: msg.record, signature: msg.signature.subarray(1) }), RecordErrorCode.ENCODING)
      await expectCode(() => decodeSignedNodeRecord(new PbWriter().tag(1, WireType.LengthDelimited).bytes(msg.record).finish()), RecordErrorCode.ENCODING)
      await expectCode(() => decodeSignedNodeRecord(new Uint8Array([...signed, 0])), RecordErrorCode.ENCODING)
    })
  })

  describe('peer ids', () => {
    it('accepts an Ed25519 id with its key inline, and refuses other ids', async () => {
      expect(recordPeerId(peer.toMultihash().bytes).equals(peer)).to.equal(true)
      const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1'))
      await expectCode(() => recordPeerId(secp.toMultihash().bytes), RecordErrorCode.UNSUPPORTED_PEER)
      await expectCode(() => recordPeerId(new Uint8Array([1, 2, 3])), RecordErrorCode.UNSUPPORTED_PEER)
      await expectCode(signNodeRecord(recordOf({ peerId: secp.toMultihash().bytes }), await generateKeyPair('secp256k1')), RecordErrorCode.UNSUPPORTED_PEER)
    })
  })
})
