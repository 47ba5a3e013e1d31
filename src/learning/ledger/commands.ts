/**
 * What `blyd rewards balance|history|explain|send|verify` do, on a ledger
 * service (the daemon's, or one over the data dir's store offline): answers
 * read from the ledger fold, and the one write, a Transfer block.
 *
 * A send is refused before anything is written when the amount is not an
 * integer in 1 .. 2^64 - 1, the recipient is this node, or this node's
 * balance (folded now) is below the amount: the block would be skipped
 * (`balance`) by every node. Its nonce is one more than the largest of this
 * key's transfers on chain; its parents the model and the ledger head, so it
 * folds after everything this node has seen.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { BlockType } from '../../chain/types.ts'
import { fromHex, toHex } from '../../protocols/hex.ts'
import { decodeReceiptBatch } from '../../protocols/receipt.ts'
import { MAX_TRANSFER_AMOUNT } from '../../protocols/transfer.ts'
import { readSmallPayload } from '../fold/blocks.ts'
import { checkLedger } from './check.ts'
import { LedgerError, LedgerErrorCode } from './errors.ts'
import { LedgerCache, foldLedger } from './fold.ts'
import { transferBlock } from './new-blocks.ts'
import { DepthIndex } from './order.ts'
import { balanceOf, findEntry, historyOf, ledgerHead, nextTransferNonce } from './query.ts'
import type { LedgerFold } from './fold.ts'
import type { LedgerService } from './service.ts'
import type { LedgerEntry, LedgerResult } from './types.ts'
import type { BlockSigner, ChainStoreApi } from '../../chain/types.ts'
import type {
  ExplainBlockJson, LedgerEntryJson, LedgerStatusJson, LedgerSummaryJson, RewardsBalanceResult, RewardsExplainParams, RewardsExplainResult,
  RewardsHistoryResult, RewardsParams, RewardsSendParams, RewardsSendResult, RewardsVerifyResult
} from '../../protocols/ipc-ledger.ts'

const TYPE_NAMES: Record<number, string> = {
  [BlockType.ModelManifest]: 'model-manifest',
  [BlockType.Proposal]: 'proposal',
  [BlockType.Attestation]: 'attestation',
  [BlockType.Params]: 'params',
  [BlockType.Receipt]: 'receipt',
  [BlockType.Transfer]: 'transfer'
}

/**
 * A key from the command line: 64 hex characters (the raw Ed25519 public
 * key) or an Ed25519 peer id (12D3KooW...). LedgerError PEER otherwise.
 */
export function parsePeerKey (text: string): Uint8Array {
  const s = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(s)) {
    return fromHex(s.toLowerCase())
  }
  let raw: Uint8Array | undefined
  try {
    const peerId = peerIdFromString(s)
    raw = peerId.type === 'Ed25519' ? peerId.publicKey.raw : undefined
  } catch {
    raw = undefined
  }
  if (raw != null) {
    return raw
  }
  throw new LedgerError(LedgerErrorCode.PEER, `a peer is an Ed25519 peer id (12D3KooW...) or 64 hex characters (its public key), not ${JSON.stringify(s)}`)
}

/** The libp2p peer id of a raw Ed25519 public key (hex). */
export function peerOfKey (keyHex: string): string {
  try {
    return peerIdFromPublicKey(publicKeyFromRaw(fromHex(keyHex))).toString()
  } catch {
    return keyHex
  }
}

/** A decimal amount of base units, 1 .. 2^64 - 1. LedgerError AMOUNT otherwise. */
export function parseAmount (text: string): bigint {
  const s = String(text).trim()
  if (!/^[0-9]+$/.test(s) || BigInt(s) < 1n || BigInt(s) > MAX_TRANSFER_AMOUNT) {
    throw new LedgerError(LedgerErrorCode.AMOUNT, `an amount is a whole number of base units from 1 to ${MAX_TRANSFER_AMOUNT} (got ${JSON.stringify(text)})`)
  }
  return BigInt(s)
}

export function entryJson (e: LedgerEntry): LedgerEntryJson {
  return {
    id: e.id,
    kind: e.kind,
    applied: e.applied,
    ...(e.reason != null ? { reason: e.reason } : {}),
    from: e.from,
    to: e.to,
    amount: e.amount.toString(),
    block: e.at.block,
    depth: e.at.depth,
    blocks: e.blocks,
    ...(e.receipt != null ? { receipt: e.receipt } : {}),
    ...(e.nonce != null ? { nonce: e.nonce.toString() } : {}),
    ...(e.gainMicroNats != null ? { gainMicroNats: e.gainMicroNats.toString() } : {})
  }
}

function keyOf (self: Uint8Array, peer?: string): string {
  return toHex(peer != null ? parsePeerKey(peer) : self)
}

export async function rewardsBalance (svc: LedgerService, self: Uint8Array, params: RewardsParams): Promise<RewardsBalanceResult> {
  const key = keyOf(self, params.peer)
  const { ledger } = await svc.fold(await svc.pickModel(params.model))
  return { model: ledger.model, peer: peerOfKey(key), key, balance: balanceOf(ledger, key).toString(), minted: ledger.minted.toString() }
}

export async function rewardsHistory (svc: LedgerService, self: Uint8Array, params: RewardsParams): Promise<RewardsHistoryResult> {
  const key = keyOf(self, params.peer)
  const { ledger } = await svc.fold(await svc.pickModel(params.model))
  const entries = historyOf(ledger, key).map(h => ({ ...entryJson(h.entry), change: h.change.toString(), balanceAfter: h.balance.toString() }))
  return { model: ledger.model, peer: peerOfKey(key), key, balance: balanceOf(ledger, key).toString(), entries }
}

async function explainBlocks (store: ChainStoreApi, depths: DepthIndex, ids: string[]): Promise<ExplainBlockJson[]> {
  const out: ExplainBlockJson[] = []
  for (const id of ids) {
    const block = await store.get(fromHex(id))
    if (block == null) {
      continue
    }
    out.push({ id, type: TYPE_NAMES[block.header.type] ?? `type-${block.header.type}`, author: toHex(block.header.author), depth: await depths.depth(block.id), timestamp: Number(block.header.timestamp) })
  }
  return out
}

async function receiptDetails (store: ChainStoreApi, fold: LedgerFold, entry: LedgerEntry): Promise<RewardsExplainResult['receipt']> {
  const block = await store.get(fromHex(entry.at.block))
  const payload = block != null ? await readSmallPayload(store, block) : undefined
  if (payload == null) {
    return undefined
  }
  const found = decodeReceiptBatch(payload).find(r => toHex(r.id) === entry.receipt)
  if (found == null) {
    return undefined
  }
  const r = found.receipt
  const governance = toHex(r.governance)
  const params = fold.learning.governance.history.find(g => g.id === governance)?.params
  return {
    id: toHex(found.id),
    model: toHex(r.model),
    version: toHex(r.version),
    governance,
    session: toHex(r.session),
    client: toHex(r.client),
    stage: toHex(r.stage),
    nonce: r.nonce.toString(),
    layerStart: r.layerStart,
    layerEnd: r.layerEnd,
    positions: r.positions,
    tokens: r.tokens,
    time: Number(r.time),
    priceLayerPosition: params != null ? String(params.priceLayerPosition) : null
  }
}

export async function rewardsExplain (svc: LedgerService, params: RewardsExplainParams): Promise<RewardsExplainResult> {
  const fold = await svc.fold(await svc.pickModel(params.model))
  const entry = findEntry(fold.ledger, params.entry)
  const blocks = await explainBlocks(svc.store, new DepthIndex(svc.store, svc.cache.depths), entry.blocks)
  const out: RewardsExplainResult = { model: fold.ledger.model, entry: entryJson(entry), blocks }
  if (entry.kind === 'receipt') {
    const receipt = await receiptDetails(svc.store, fold, entry)
    if (receipt != null) {
      out.receipt = receipt
    }
  }
  if (entry.kind === 'proposal' || entry.kind === 'validator' || entry.kind === 'fee') {
    const p = fold.learning.proposals.find(p => p.id === entry.blocks[0])
    if (p != null) {
      out.proposal = { id: p.id, status: p.status, reason: p.reason, governance: p.governance, accepts: p.accepts, rejects: p.rejects }
    }
  }
  return out
}

/** Publishes a Transfer of `params.amount` from `signer` (file comment); `store` is the store that publishes (the daemon's gossips). */
export async function rewardsSend (svc: LedgerService, store: ChainStoreApi, signer: BlockSigner, params: RewardsSendParams): Promise<RewardsSendResult> {
  const amount = parseAmount(params.amount)
  const to = parsePeerKey(params.to)
  const from = toHex(signer.publicKey)
  if (toHex(to) === from) {
    throw new LedgerError(LedgerErrorCode.SELF, 'a transfer to this node\'s own key moves nothing')
  }
  const modelId = await svc.pickModel(params.model)
  const before = await svc.fold(modelId)
  const balance = balanceOf(before.ledger, from)
  if (balance < amount) {
    throw new LedgerError(LedgerErrorCode.INSUFFICIENT_BALANCE, `this node holds ${balance} base units of model ${before.ledger.model}, less than ${amount}`)
  }
  const nonce = nextTransferNonce(before.ledger, from)
  const head = ledgerHead(before.ledger)
  const block = await store.createBlock(transferBlock(modelId, to, amount, nonce, head != null ? [fromHex(head.block)] : []), signer)
  const after = await svc.fold(modelId)
  return {
    model: before.ledger.model,
    transfer: toHex(block.id),
    from,
    to: toHex(to),
    amount: amount.toString(),
    nonce: nonce.toString(),
    balanceBefore: balance.toString(),
    balanceAfter: balanceOf(after.ledger, from).toString()
  }
}

export function ledgerSummary (ledger: LedgerResult): LedgerSummaryJson {
  const violations = checkLedger(ledger)
  return {
    model: ledger.model,
    ok: violations.length === 0,
    blocks: ledger.counts.blocks,
    entries: ledger.entries.length,
    receiptsPaid: ledger.counts.receiptsPaid,
    receiptsSkipped: ledger.counts.receiptsSkipped,
    transfersApplied: ledger.counts.transfersApplied,
    transfersSkipped: ledger.counts.transfersSkipped,
    minted: ledger.minted.toString(),
    paid: ledger.paid.toString(),
    transferred: ledger.transferred.toString(),
    fees: ledger.fees.toString(),
    accounts: [...ledger.balances.values()].filter(v => v !== 0n).length,
    checks: ledger.checks,
    problems: ledger.problems.map(p => ({ block: p.block, reason: p.reason, ...(p.error != null ? { error: p.error } : {}) })),
    violations: violations.map(v => ({ invariant: v.invariant, ...(v.at != null ? { block: v.at.block } : {}), message: v.message }))
  }
}

/**
 * Folds every model's ledger again from the blocks, with nothing cached
 * (every receipt signature verified again), and checks every invariant
 * (check.ts). `ok` is false on any violation.
 */
export async function rewardsVerify (svc: LedgerService): Promise<RewardsVerifyResult> {
  const evalWindows = svc.evalWindows()
  const models: LedgerSummaryJson[] = []
  for (const id of await svc.models()) {
    const manifest = await svc.store.get(id)
    if (manifest?.payloadComplete !== true) {
      continue
    }
    const { ledger } = await foldLedger(svc.store, id, { evalWindows: evalWindows.provider(id), cache: new LedgerCache() })
    models.push(ledgerSummary(ledger))
  }
  return { ok: models.every(m => m.ok), models }
}

/** This node's balances (the last folds, at most `maxAgeMs` old) and its receipts not yet published. */
export async function ledgerStatus (svc: LedgerService, self: Uint8Array, pendingReceipts: number, maxAgeMs: number): Promise<LedgerStatusJson> {
  const key = toHex(self)
  const out: LedgerStatusJson = { key, balances: [], pendingReceipts }
  try {
    for (const id of await svc.models()) {
      const manifest = await svc.store.get(id)
      if (manifest?.payloadComplete !== true) {
        continue
      }
      const { ledger } = await svc.recent(id, maxAgeMs)
      out.balances.push({ model: ledger.model, balance: balanceOf(ledger, key).toString() })
    }
  } catch (err: any) {
    out.error = `${String(err?.code ?? 'ERR')}: ${String(err?.message ?? err)}`
  }
  return out
}
