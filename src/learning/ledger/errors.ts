import { BlydError } from '../../protocols/errors.ts'

/**
 * Stable codes of the errors the ledger commands raise. The fold's findings
 * about blocks (a receipt skipped, a transfer short) are results with a
 * reason, not errors.
 */
export const LedgerErrorCode = {
  /** no model on chain A, several and none named, or the named one is not there */
  MODEL: 'ERR_LEDGER_MODEL',
  /** a peer argument that is neither an Ed25519 peer id nor 64 hex characters */
  PEER: 'ERR_LEDGER_PEER',
  /** an amount that is not an integer in 1 .. 2^64 - 1 */
  AMOUNT: 'ERR_LEDGER_AMOUNT',
  /** a send to this node's own key */
  SELF: 'ERR_LEDGER_SELF',
  /** a send larger than this node's balance */
  INSUFFICIENT_BALANCE: 'ERR_LEDGER_INSUFFICIENT_BALANCE',
  /** no entry with that id or prefix */
  ENTRY_NOT_FOUND: 'ERR_LEDGER_ENTRY_NOT_FOUND',
  /** an entry prefix that matches several entries */
  AMBIGUOUS: 'ERR_LEDGER_AMBIGUOUS',
  /** a receipt this node will not co-sign or store (a field that does not match the work, a bad signature) */
  RECEIPT: 'ERR_LEDGER_RECEIPT'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type LedgerErrorCode = typeof LedgerErrorCode[keyof typeof LedgerErrorCode]

export class LedgerError extends BlydError {
  constructor (code: LedgerErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'LedgerError'
  }
}
