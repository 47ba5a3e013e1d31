/**
 * Header rules of the ledger blocks (protocols/ledger.md): Receipt and
 * Transfer (chain A). Each rule has its own ChainError code so rejections
 * are counted per rule.
 *
 * `validateLedgerHeader` holds the rules that need only the header (exactly
 * the type's fields, each of its kind; a Receipt's count and payload size;
 * a Transfer's amount, recipient and absent payload; the model parent
 * listed); `validateLedgerParents` the rule that needs the parents' headers
 * (the model parent is a ModelManifest). Anything that needs the payload
 * (receipt signatures, the Merkle root, who is paid) or the whole chain
 * (balances, nonces) is the ledger fold's business (src/learning/ledger/).
 */
import { toHex } from '../protocols/hex.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { MAX_RECEIPTS_PER_BLOCK, ReceiptField, receiptBatchBytes } from '../protocols/receipt.ts'
import { TransferField } from '../protocols/transfer.ts'
import { ID_LENGTH } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { BlockType } from './types.ts'
import type { BlockHeader, SignedHeader } from './types.ts'

type FieldKind = 'id' | 'uint'

const RULES: Partial<Record<BlockType, { name: string, fields: Record<string, FieldKind>, codes: { fields: ChainErrorCode, payload: ChainErrorCode, parent: ChainErrorCode } }>> = {
  [BlockType.Receipt]: {
    name: 'Receipt',
    fields: { [ReceiptField.MODEL]: 'id', [ReceiptField.RECEIPTS]: 'uint', [ReceiptField.ROOT]: 'id' },
    codes: { fields: ChainErrorCode.RECEIPT_FIELDS, payload: ChainErrorCode.RECEIPT_PAYLOAD, parent: ChainErrorCode.RECEIPT_PARENT }
  },
  [BlockType.Transfer]: {
    name: 'Transfer',
    fields: { [TransferField.MODEL]: 'id', [TransferField.TO]: 'id', [TransferField.AMOUNT]: 'uint', [TransferField.NONCE]: 'uint' },
    codes: { fields: ChainErrorCode.TRANSFER_FIELDS, payload: ChainErrorCode.TRANSFER_PAYLOAD, parent: ChainErrorCode.TRANSFER_PARENT }
  }
}

/** True for the block types this file checks. */
export function isLedgerBlockType (type: number): boolean {
  return RULES[type as BlockType] != null
}

function field (header: BlockHeader, key: string): { value: any } {
  return header.fields.get(key) as { value: any }
}

/**
 * The rules of a ledger block that need only its header: exactly its
 * fields, each of its kind (ERR_<TYPE>_BLOCK_FIELDS, also a Receipt's
 * `receipts` outside 1..MAX_RECEIPTS_PER_BLOCK and a Transfer's `amount` of
 * 0); a Receipt's payload of exactly the batch size its count implies and a
 * Transfer's absent payload (ERR_<TYPE>_BLOCK_PAYLOAD); a Transfer to its
 * own author (ERR_TRANSFER_BLOCK_RECIPIENT); the model manifest among the
 * parents (ERR_<TYPE>_BLOCK_PARENT). No-op for other types.
 */
export function validateLedgerHeader (header: BlockHeader, blockIdHex?: string): void {
  const rules = RULES[header.type]
  if (rules == null) {
    return
  }
  const opts = { blockId: blockIdHex }
  const { name, codes } = rules
  for (const [key, kind] of Object.entries(rules.fields)) {
    const f = header.fields.get(key)
    const ok = f != null && ((kind === 'id' && f.kind === 'bytes' && f.value.length === ID_LENGTH) || (kind === 'uint' && f.kind === 'uint'))
    if (!ok) {
      throw new ChainError(codes.fields, `a ${name} block needs field '${key}' (${kind === 'id' ? `bytes, ${ID_LENGTH} bytes` : 'uint'})`, opts)
    }
  }
  for (const key of header.fields.keys()) {
    if (!Object.hasOwn(rules.fields, key)) {
      throw new ChainError(codes.fields, `a ${name} block may not carry field '${key}'`, opts)
    }
  }
  const model = field(header, 'model').value as Uint8Array
  if (header.type === BlockType.Receipt) {
    const count = field(header, ReceiptField.RECEIPTS).value as bigint
    if (count < 1n || count > BigInt(MAX_RECEIPTS_PER_BLOCK)) {
      throw new ChainError(codes.fields, `a Receipt block's '${ReceiptField.RECEIPTS}' is 1..${MAX_RECEIPTS_PER_BLOCK}, not ${count}`, opts)
    }
    const size = BigInt(receiptBatchBytes(Number(count)))
    if (header.payloadSize !== size) {
      throw new ChainError(codes.payload, `a Receipt block of ${count} receipts carries a ${size}-byte batch, not ${header.payloadSize} bytes`, opts)
    }
  } else {
    if ((field(header, TransferField.AMOUNT).value as bigint) < 1n) {
      throw new ChainError(codes.fields, `a Transfer block's '${TransferField.AMOUNT}' is at least 1`, opts)
    }
    if (equalBytes(field(header, TransferField.TO).value as Uint8Array, header.author)) {
      throw new ChainError(ChainErrorCode.TRANSFER_RECIPIENT, 'a Transfer block\'s \'to\' is another key than its author', opts)
    }
    if (header.payloadSize !== 0n) {
      throw new ChainError(codes.payload, `a Transfer block carries no payload (got ${header.payloadSize} bytes)`, opts)
    }
  }
  if (!header.parents.some(p => equalBytes(p, model))) {
    throw new ChainError(codes.parent, `a ${name} block must list its model manifest ('model') among its parents`, opts)
  }
}

/** The rule of a ledger block that needs its parents' headers: its `model` parent is a ModelManifest. No-op for other types. */
export function validateLedgerParents (block: SignedHeader, parents: Map<string, SignedHeader>): void {
  const rules = RULES[block.header.type]
  if (rules == null) {
    return
  }
  const model = field(block.header, 'model').value as Uint8Array
  if (parents.get(toHex(model))?.header.type !== BlockType.ModelManifest) {
    throw new ChainError(rules.codes.parent, `the 'model' parent ${toHex(model)} of a ${rules.name} block is not a ModelManifest block`, { blockId: toHex(block.id) })
  }
}
