import { expect } from 'aegir/chai'
import { BlockType, ChainId, decodeBlockHeader, decodeSignedBlockHeader, encodeBlockHeader, encodeSignedBlockHeader } from '../../src/protocols/block-header.ts'
import { bytesOf, header, signer } from '../chain/helpers.ts'
import type { BlockHeader } from '../../src/protocols/block-header.ts'

const author = signer(1).publicKey
const id = (n: number): Uint8Array => new Uint8Array(32).fill(n)

function full (): BlockHeader {
  return header({
    author,
    chain: ChainId.B,
    type: BlockType.Layer,
    parents: [id(9), id(3)],
    timestamp: 1_712_345_678_901n,
    fields: new Map([
      ['unit', { kind: 'uint', value: 2n ** 64n - 1n }],
      ['model', { kind: 'bytes', value: id(3) }],
      ['delta', { kind: 'int', value: -(2n ** 63n) }],
      ['name', { kind: 'string', value: 'décodeur ✓' }]
    ]),
    payloadSize: 5000n,
    chunkSize: 4096,
    chunkHashes: [id(1), id(2)]
  })
}

function expectEncodingError (fn: () => unknown): void {
  expect(fn).to.throw().with.property('code', 'ERR_BLOCK_ENCODING')
}

/** splice: replace bytes [start, end) of `bytes` with `insert` */
function splice (bytes: Uint8Array, start: number, end: number, insert: number[]): Uint8Array {
  return Uint8Array.from([...bytes.subarray(0, start), ...insert, ...bytes.subarray(end)])
}

describe('block header codec', () => {
  it('round-trips every field and sorts parents and field keys', () => {
    const h = full()
    const bytes = encodeBlockHeader(h)
    const back = decodeBlockHeader(bytes)
    expect(back.version).to.equal(1)
    expect(back.chain).to.equal(ChainId.B)
    expect(back.type).to.equal(BlockType.Layer)
    expect(back.parents.map(p => p[0])).to.deep.equal([3, 9])
    expect(back.author).to.deep.equal(author)
    expect(back.timestamp).to.equal(1_712_345_678_901n)
    expect([...back.fields.keys()]).to.deep.equal(['delta', 'model', 'name', 'unit'])
    expect(back.fields.get('unit')).to.deep.equal({ kind: 'uint', value: 2n ** 64n - 1n })
    expect(back.fields.get('delta')).to.deep.equal({ kind: 'int', value: -(2n ** 63n) })
    expect(back.fields.get('name')).to.deep.equal({ kind: 'string', value: 'décodeur ✓' })
    expect(back.payloadSize).to.equal(5000n)
    expect(back.chunkSize).to.equal(4096)
    expect(back.chunkHashes.length).to.equal(2)
    expect(encodeBlockHeader(back)).to.deep.equal(bytes)
  })

  it('encodes the same header to the same bytes whatever the input order', () => {
    const a = full()
    const b = { ...full(), parents: [id(3), id(9)], fields: new Map([...full().fields].reverse()) }
    expect(encodeBlockHeader(a)).to.deep.equal(encodeBlockHeader(b))
  })

  it('omits proto3 defaults and writes version first', () => {
    const bytes = encodeBlockHeader(header({ author, timestamp: 0n }))
    // version(1)=1, chain(2)=1, type(3)=2, author(5) 32 bytes: nothing else
    expect([...bytes.subarray(0, 6)]).to.deep.equal([0x08, 1, 0x10, 1, 0x18, 2])
    expect(bytes.length).to.equal(6 + 2 + 32)
  })

  it('rejects parents or hashes of the wrong length and duplicate parents', () => {
    expectEncodingError(() => encodeBlockHeader(header({ author, parents: [new Uint8Array(31)] })))
    expectEncodingError(() => encodeBlockHeader(header({ author, parents: [id(1), id(1)] })))
    expectEncodingError(() => encodeBlockHeader(header({ author, chunkHashes: [new Uint8Array(33)] })))
    expectEncodingError(() => encodeBlockHeader(header({ author: new Uint8Array(31) })))
    expectEncodingError(() => encodeBlockHeader({ ...header({ author }), version: 2 }))
  })

  it('rejects unsorted parents on the wire', () => {
    const bytes = encodeBlockHeader(header({ author, parents: [id(1), id(2)] }))
    // parents start after version, chain, type (6 bytes); each is 2 + 32 bytes
    const swapped = Uint8Array.from([...bytes.subarray(0, 6), ...bytes.subarray(40, 74), ...bytes.subarray(6, 40), ...bytes.subarray(74)])
    expect(swapped.length).to.equal(bytes.length)
    expectEncodingError(() => decodeBlockHeader(swapped))
  })

  it('rejects duplicate parents on the wire', () => {
    const bytes = encodeBlockHeader(header({ author, parents: [id(1)] }))
    const dup = Uint8Array.from([...bytes.subarray(0, 40), ...bytes.subarray(6, 40), ...bytes.subarray(40)])
    expectEncodingError(() => decodeBlockHeader(dup))
  })

  it('rejects a non-minimal varint', () => {
    const bytes = encodeBlockHeader(header({ author }))
    // version 1 as 0x81 0x00
    expectEncodingError(() => decodeBlockHeader(splice(bytes, 1, 2, [0x81, 0x00])))
  })

  it('rejects fields out of order', () => {
    const bytes = encodeBlockHeader(header({ author }))
    // chain before version
    const swapped = Uint8Array.from([0x10, 1, 0x08, 1, ...bytes.subarray(4)])
    expectEncodingError(() => decodeBlockHeader(swapped))
  })

  it('rejects a default value written explicitly', () => {
    const bytes = encodeBlockHeader(header({ author, timestamp: 0n }))
    expectEncodingError(() => decodeBlockHeader(Uint8Array.from([...bytes, 0x30, 0x00])))
  })

  it('rejects unknown fields, trailing bytes, truncation and wrong wire types', () => {
    const bytes = encodeBlockHeader(header({ author }))
    expectEncodingError(() => decodeBlockHeader(Uint8Array.from([...bytes, 0x58, 0x01]))) // field 11
    expectEncodingError(() => decodeBlockHeader(Uint8Array.from([...bytes, 0x00])))
    expectEncodingError(() => decodeBlockHeader(bytes.subarray(0, bytes.length - 1)))
    expectEncodingError(() => decodeBlockHeader(splice(bytes, 0, 2, [0x0a, 0x01, 0x01]))) // version as bytes
    expectEncodingError(() => decodeBlockHeader(new Uint8Array(0)))
    expectEncodingError(() => decodeBlockHeader(bytesOf(200, 3)))
  })

  it('rejects an unsupported version', () => {
    const bytes = encodeBlockHeader(header({ author }))
    expectEncodingError(() => decodeBlockHeader(splice(bytes, 1, 2, [2])))
  })

  it('rejects unsorted and duplicate typed fields on the wire', () => {
    const a = encodeBlockHeader(header({ author, timestamp: 0n, fields: new Map([['a', { kind: 'uint', value: 1n }]]) }))
    const b = encodeBlockHeader(header({ author, timestamp: 0n, fields: new Map([['b', { kind: 'uint', value: 1n }]]) }))
    const fa = a.subarray(40)
    const fb = b.subarray(40)
    expectEncodingError(() => decodeBlockHeader(Uint8Array.from([...a.subarray(0, 40), ...fb, ...fa])))
    expectEncodingError(() => decodeBlockHeader(Uint8Array.from([...a.subarray(0, 40), ...fa, ...fa])))
    expect(decodeBlockHeader(Uint8Array.from([...a.subarray(0, 40), ...fa, ...fb])).fields.size).to.equal(2)
  })

  it('rejects a typed field with two values, no value, or invalid UTF-8', () => {
    const base = encodeBlockHeader(header({ author, timestamp: 0n })).subarray(0, 40)
    const field = (inner: number[]): Uint8Array => Uint8Array.from([...base, 0x3a, inner.length, ...inner])
    expect(decodeBlockHeader(field([0x0a, 1, 0x61, 0x18, 5])).fields.get('a')).to.deep.equal({ kind: 'uint', value: 5n })
    expectEncodingError(() => decodeBlockHeader(field([0x0a, 1, 0x61, 0x18, 5, 0x18, 6])))
    expectEncodingError(() => decodeBlockHeader(field([0x0a, 1, 0x61])))
    expectEncodingError(() => decodeBlockHeader(field([0x0a, 1, 0xff, 0x18, 5])))
    expectEncodingError(() => decodeBlockHeader(field([0x18, 5])))
  })

  it('rejects out-of-range integer field values when encoding', () => {
    expectEncodingError(() => encodeBlockHeader(header({ author, fields: new Map([['u', { kind: 'uint', value: -1n }]]) })))
    expectEncodingError(() => encodeBlockHeader(header({ author, fields: new Map([['u', { kind: 'uint', value: 2n ** 64n }]]) })))
    expectEncodingError(() => encodeBlockHeader(header({ author, fields: new Map([['i', { kind: 'int', value: 2n ** 63n }]]) })))
    expectEncodingError(() => encodeBlockHeader(header({ author, fields: new Map([['', { kind: 'uint', value: 1n }]]) })))
  })

  describe('signed envelope', () => {
    const headerBytes = encodeBlockHeader(header({ author }))
    const signature = bytesOf(64, 5)

    it('round-trips', () => {
      const env = decodeSignedBlockHeader(encodeSignedBlockHeader({ header: headerBytes, signature }))
      expect(env.header).to.deep.equal(headerBytes)
      expect(env.signature).to.deep.equal(signature)
    })

    it('rejects a short signature, missing parts, unknown fields, reordering and trailing bytes', () => {
      const enc = encodeSignedBlockHeader({ header: headerBytes, signature })
      expectEncodingError(() => encodeSignedBlockHeader({ header: headerBytes, signature: signature.subarray(1) }))
      expectEncodingError(() => decodeSignedBlockHeader(enc.subarray(0, 2 + headerBytes.length)))
      expectEncodingError(() => decodeSignedBlockHeader(Uint8Array.from([...enc, 0x18, 1])))
      expectEncodingError(() => decodeSignedBlockHeader(Uint8Array.from([...enc, 0])))
      const sigPart = enc.subarray(2 + headerBytes.length)
      expectEncodingError(() => decodeSignedBlockHeader(Uint8Array.from([...sigPart, ...enc.subarray(0, 2 + headerBytes.length)])))
      expectEncodingError(() => decodeSignedBlockHeader(Uint8Array.from([0x0a, 0x05, 1, 2])))
    })
  })
})
