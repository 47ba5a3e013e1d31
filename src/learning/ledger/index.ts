/**
 * The BLY ledger of a model (docs/ledger.md, protocols/ledger.md): the
 * fold, its checker and queries, the blocks a node publishes, receipt
 * signing.
 */
export { foldLedger, LedgerCache } from './fold.ts'
export type { LedgerFold, LedgerFoldOptions } from './fold.ts'
export { checkLedger } from './check.ts'
export { balanceOf, findEntry, historyOf, ledgerHead, nextTransferNonce, receiptNonceSpent, receiptTermsRefusal } from './query.ts'
export type { HistoryItem } from './query.ts'
export { receiptBlock, transferBlock, batchRoot } from './new-blocks.ts'
export { coSignReceipt, signReceiptBody, SignatureVerifier } from './receipt-signing.ts'
export { lowerMedian, meanGainMicroNats } from './gain.ts'
export { DepthIndex, comparePositions } from './order.ts'
export { LedgerState } from './state.ts'
export { LedgerError, LedgerErrorCode } from './errors.ts'
export type * from './types.ts'
export { LedgerService } from './service.ts'
export type { LedgerServiceInit } from './service.ts'
export { ledgerStatus, ledgerSummary, parseAmount, parsePeerKey, peerOfKey, rewardsBalance, rewardsExplain, rewardsHistory, rewardsSend, rewardsVerify } from './commands.ts'
export { ReceiptOutbox, createReceiptOutbox } from './outbox.ts'
export type { ReceiptOutboxInit, ServedSession } from './outbox.ts'
