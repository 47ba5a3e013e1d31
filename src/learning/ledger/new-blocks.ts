/**
 * Builders of the ledger blocks a node publishes (protocols/ledger.md): a
 * stage's Receipt block of co-signed receipts, and a Transfer. Each returns
 * the NewBlock to pass to ChainStore#createBlock with the node's signer;
 * the store checks every header rule again when it takes the block.
 * `parents`: besides the model manifest, the deepest ledger block the
 * publisher knows (ledgerHead), so the block folds after everything its
 * author saw.
 */
import { BlockType, ChainId } from '../../chain/types.ts'
import { ReceiptField, SIGNED_RECEIPT_BYTES, encodeReceiptBatch, receiptBatchBytes, receiptsRoot } from '../../protocols/receipt.ts'
import { TransferField } from '../../protocols/transfer.ts'
import type { FieldValue, NewBlock } from '../../chain/types.ts'
import type { SignedReceipt } from '../../protocols/receipt.ts'

const id = (value: Uint8Array): FieldValue => ({ kind: 'bytes', value })
const uint = (value: number | bigint): FieldValue => ({ kind: 'uint', value: BigInt(value) })

function parentsOf (model: Uint8Array, extra: Uint8Array[]): Uint8Array[] {
  const seen = new Set<string>()
  const out: Uint8Array[] = []
  for (const p of [model, ...extra]) {
    const hex = Buffer.from(p).toString('hex')
    if (!seen.has(hex)) {
      seen.add(hex)
      out.push(p)
    }
  }
  return out
}

/** The Merkle root of a canonical batch's receipts. */
export function batchRoot (batch: Uint8Array, count: number): Uint8Array {
  const leaves: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const at = receiptBatchBytes(i)
    leaves.push(batch.subarray(at, at + SIGNED_RECEIPT_BYTES))
  }
  return receiptsRoot(leaves)
}

/** A Receipt block of `receipts` (1..MAX_RECEIPTS_PER_BLOCK, each co-signed, the author's key their stage). */
export function receiptBlock (model: Uint8Array, receipts: SignedReceipt[], parents: Uint8Array[] = []): NewBlock {
  const payload = encodeReceiptBatch(receipts)
  return {
    chain: ChainId.A,
    type: BlockType.Receipt,
    parents: parentsOf(model, parents),
    fields: {
      [ReceiptField.MODEL]: id(model),
      [ReceiptField.RECEIPTS]: uint(receipts.length),
      [ReceiptField.ROOT]: id(batchRoot(payload, receipts.length))
    },
    payload
  }
}

/** A Transfer of `amount` base units from the signer to `to`, with the signer's `nonce`. */
export function transferBlock (model: Uint8Array, to: Uint8Array, amount: bigint, nonce: bigint, parents: Uint8Array[] = []): NewBlock {
  return {
    chain: ChainId.A,
    type: BlockType.Transfer,
    parents: parentsOf(model, parents),
    fields: {
      [TransferField.MODEL]: id(model),
      [TransferField.TO]: id(to),
      [TransferField.AMOUNT]: uint(amount),
      [TransferField.NONCE]: uint(nonce)
    }
  }
}
