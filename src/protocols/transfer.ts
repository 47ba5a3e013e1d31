/**
 * The Transfer block (normative text: protocols/ledger.md): its author (the
 * sender; the block signature is the sender's signature) moves `amount`
 * base units of a model's ledger to `to`. Everything is in the header; a
 * Transfer carries no payload.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */

/** The header fields of a Transfer block (type 10, chain A). */
export const TransferField = {
  /** bytes32: the model manifest id (whose ledger) */
  MODEL: 'model',
  /** bytes32: the recipient's Ed25519 public key (not the author; a key no one holds burns nothing but makes the amount unspendable) */
  TO: 'to',
  /** uint: base units, 1 .. 2^64 - 1 */
  AMOUNT: 'amount',
  /** uint: the sender's nonce; the first transfer of a (sender, nonce) in fold order spends it */
  NONCE: 'nonce'
} as const

/** Largest amount: a u64. */
export const MAX_TRANSFER_AMOUNT = 0xffff_ffff_ffff_ffffn

/** Largest total a model's ledger may mint: balances and amounts stay u64. */
export const MAX_LEDGER_SUPPLY = 0xffff_ffff_ffff_ffffn
