/**
 * Receipts and receipt batches (protocols/ledger.md): the fixed-width body
 * (golden offsets), ids that ignore signatures, batches in id order with
 * every rule's code, the length-prefixed Merkle root, and a fuzz run: every
 * mutant of a valid batch decodes to a canonical batch or throws
 * ReceiptCodecError.
 */
import { expect } from 'aegir/chai'
import {
  MAX_RECEIPTS_PER_BLOCK, RECEIPT_BODY_BYTES, ReceiptCodecError, SIGNED_RECEIPT_BYTES, decodeReceiptBatch, decodeReceiptBody,
  decodeSignedReceipt, encodeReceiptBatch, encodeReceiptBody, encodeSignedReceipt, receiptBatchBytes, receiptId, receiptLeaf, receiptMessage, receiptsRoot
} from '../../src/protocols/receipt.ts'
import { Mutator } from './mutate.ts'
import type { SignedReceipt } from '../../src/protocols/receipt.ts'

function receipt (n: number): SignedReceipt {
  return {
    model: new Uint8Array(32).fill(1),
    version: new Uint8Array(32).fill(2),
    governance: new Uint8Array(32).fill(3),
    session: new Uint8Array(16).fill(4),
    client: new Uint8Array(32).fill(5),
    stage: new Uint8Array(32).fill(6),
    nonce: BigInt(n),
    layerStart: 0,
    layerEnd: 4,
    positions: 100 + n,
    tokens: 20,
    time: 1_700_000_000_000n,
    clientSig: new Uint8Array(64).fill(7),
    stageSig: new Uint8Array(64).fill(8)
  }
}

function expectCode (fn: () => unknown, code: string): void {
  try {
    fn()
  } catch (err: any) {
    expect(err).to.be.instanceOf(ReceiptCodecError)
    expect(err.code).to.equal(code)
    return
  }
  throw new Error(`expected ${code}`)
}

describe('protocols/receipt', () => {
  it('a body is 209 fixed-width bytes, little-endian, in the documented order (golden offsets)', () => {
    const body = encodeReceiptBody({ ...receipt(0x0102), layerStart: 3, layerEnd: 7, positions: 0x01020304, tokens: 9, time: 0x0a0b0c0dn })
    expect(RECEIPT_BODY_BYTES).to.equal(209)
    expect(SIGNED_RECEIPT_BYTES).to.equal(337)
    expect(body.length).to.equal(209)
    expect(body[0]).to.equal(1)
    expect(body.subarray(1, 33).every(b => b === 1)).to.equal(true)
    expect(body.subarray(97, 113).every(b => b === 4)).to.equal(true)
    expect(Buffer.from(body.subarray(177, 185)).toString('hex')).to.equal('0201000000000000')
    expect(Buffer.from(body.subarray(185, 201)).toString('hex')).to.equal('03000000' + '07000000' + '04030201' + '09000000')
    expect(Buffer.from(body.subarray(201)).toString('hex')).to.equal('0d0c0b0a00000000')
    const r = receipt(5)
    const { clientSig, stageSig, ...body2 } = r
    expect(decodeReceiptBody(encodeReceiptBody(r))).to.deep.equal(body2)
    expect(clientSig.length + stageSig.length).to.equal(128)
  })

  it('the signed message is the domain then the body; the id covers the body only (re-signing keeps the id)', () => {
    const body = encodeReceiptBody(receipt(1))
    expect(Buffer.from(receiptMessage(body)).toString('utf8', 0, 14)).to.equal('bly/receipt/v1')
    expect(receiptMessage(body).subarray(14)).to.deep.equal(body)
    const a = decodeSignedReceipt(encodeSignedReceipt(receipt(1)))
    const b = decodeSignedReceipt(encodeSignedReceipt({ ...receipt(1), clientSig: new Uint8Array(64).fill(9) }))
    expect(a.id).to.deep.equal(b.id)
    expect(a.id).to.deep.equal(receiptId(body))
    expect(receiptId(encodeReceiptBody(receipt(2)))).to.not.deep.equal(a.id)
  })

  it('a field out of its width or of the wrong length is refused (ERR_RECEIPT_CODEC_VALUE)', () => {
    expectCode(() => encodeReceiptBody({ ...receipt(1), nonce: -1n }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), nonce: 1n << 64n }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), positions: 2 ** 32 }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), tokens: -1 }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), layerEnd: 1.5 }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), client: new Uint8Array(31) }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeReceiptBody({ ...receipt(1), session: new Uint8Array(32) }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => encodeSignedReceipt({ ...receipt(1), stageSig: new Uint8Array(63) }), 'ERR_RECEIPT_CODEC_VALUE')
    expectCode(() => decodeReceiptBody(new Uint8Array(208).fill(1)), 'ERR_RECEIPT_CODEC_TRUNCATED')
    expectCode(() => decodeReceiptBody(Uint8Array.of(...encodeReceiptBody(receipt(1)), 0)), 'ERR_RECEIPT_CODEC_TRAILING')
    expectCode(() => decodeReceiptBody(Uint8Array.of(2, ...encodeReceiptBody(receipt(1)).subarray(1))), 'ERR_RECEIPT_CODEC_VERSION')
  })

  it('a batch is version, count, receipts in id order whatever order they were given; one list has one batch', () => {
    const rs = [receipt(1), receipt(2), receipt(3), receipt(4)]
    const batch = encodeReceiptBatch(rs)
    expect(batch.length).to.equal(receiptBatchBytes(4))
    expect(encodeReceiptBatch([...rs].reverse())).to.deep.equal(batch)
    const decoded = decodeReceiptBatch(batch)
    expect(decoded.map(d => Buffer.from(d.id).toString('hex'))).to.deep.equal(decoded.map(d => Buffer.from(d.id).toString('hex')).sort())
    expect(encodeReceiptBatch(decoded.map(d => d.receipt))).to.deep.equal(batch)
  })

  it('batch rules: count 1..4096, exact length, ids strictly ascending, version', () => {
    expectCode(() => encodeReceiptBatch([]), 'ERR_RECEIPT_CODEC_COUNT')
    expectCode(() => encodeReceiptBatch([receipt(1), receipt(1)]), 'ERR_RECEIPT_CODEC_ORDER')
    const batch = encodeReceiptBatch([receipt(1), receipt(2)])
    const swapped = Uint8Array.from(batch)
    swapped.set(batch.subarray(receiptBatchBytes(1), receiptBatchBytes(2)), receiptBatchBytes(0))
    swapped.set(batch.subarray(receiptBatchBytes(0), receiptBatchBytes(1)), receiptBatchBytes(1))
    expectCode(() => decodeReceiptBatch(swapped), 'ERR_RECEIPT_CODEC_ORDER')
    const twice = Uint8Array.from(batch)
    twice.set(batch.subarray(receiptBatchBytes(0), receiptBatchBytes(1)), receiptBatchBytes(1))
    expectCode(() => decodeReceiptBatch(twice), 'ERR_RECEIPT_CODEC_ORDER')
    expectCode(() => decodeReceiptBatch(batch.subarray(0, batch.length - 1)), 'ERR_RECEIPT_CODEC_TRUNCATED')
    expectCode(() => decodeReceiptBatch(Uint8Array.of(...batch, 0)), 'ERR_RECEIPT_CODEC_TRAILING')
    expectCode(() => decodeReceiptBatch(Uint8Array.of(2, ...batch.subarray(1))), 'ERR_RECEIPT_CODEC_VERSION')
    expectCode(() => decodeReceiptBatch(Uint8Array.of(1, 0, 0, 0, 0)), 'ERR_RECEIPT_CODEC_COUNT')
    const huge = Uint8Array.of(1, 0, 0, 0, 0)
    new DataView(huge.buffer).setUint32(1, MAX_RECEIPTS_PER_BLOCK + 1, true)
    expectCode(() => decodeReceiptBatch(huge), 'ERR_RECEIPT_CODEC_COUNT')
    expectCode(() => decodeReceiptBatch(Uint8Array.of(1, 0)), 'ERR_RECEIPT_CODEC_TRUNCATED')
  })

  it('Merkle leaves are tagged and length-prefixed; odd levels carry up; order and content change the root', () => {
    const a = encodeSignedReceipt(receipt(1))
    const b = encodeSignedReceipt(receipt(2))
    const c = encodeSignedReceipt(receipt(3))
    expect(receiptsRoot([a])).to.deep.equal(receiptLeaf(a))
    // 'abc1' + '23' never hashes like 'abc' + '123': the length is part of each leaf
    const ab = Uint8Array.of(...a, ...b)
    expect(receiptsRoot([ab])).to.not.deep.equal(receiptsRoot([a, b]))
    expect(receiptsRoot([a.subarray(0, 300), Uint8Array.of(...a.subarray(300), ...b)])).to.not.deep.equal(receiptsRoot([a, b]))
    expect(receiptsRoot([a, b])).to.not.deep.equal(receiptsRoot([b, a]))
    expect(receiptsRoot([a, b, c])).to.not.deep.equal(receiptsRoot([a, b]))
    expect(receiptsRoot([a, b, c])).to.not.deep.equal(receiptsRoot([a, b, c, c]))
    // a node's hash never equals a leaf's: a two-leaf root is not a leaf of anything
    expect(receiptsRoot([a, b])).to.not.deep.equal(receiptLeaf(Uint8Array.of(...receiptLeaf(a), ...receiptLeaf(b))))
    expectCode(() => receiptsRoot([]), 'ERR_RECEIPT_CODEC_COUNT')
  })

  it('fuzz: 5000 mutants of a valid batch decode to a canonical batch or throw ReceiptCodecError', () => {
    const valid = encodeReceiptBatch([receipt(1), receipt(2), receipt(3)])
    const m = new Mutator(1313)
    let decoded = 0
    for (let i = 0; i < 5000; i++) {
      const bytes = m.mutate(valid)
      try {
        const rs = decodeReceiptBatch(bytes)
        expect(encodeReceiptBatch(rs.map(r => r.receipt))).to.deep.equal(bytes)
        decoded++
      } catch (err) {
        if (!(err instanceof ReceiptCodecError)) {
          throw err
        }
      }
    }
    expect(decoded).to.be.greaterThan(0)
  })
})
