/**
 * A stage's receipts between the session's close and the chain: the stage
 * checks a client-signed receipt against what it served in that session
 * (`cosign`), adds its own signature, and publishes its receipts in Receipt
 * blocks (`flush`) once `batchSize` are pending or `flushIntervalMs` after
 * the oldest one, and on stop.
 *
 * What the stage checks before it signs (LedgerErrorCode.RECEIPT on any,
 * nothing kept): the body decodes; it names this stage's key, the session's
 * model, the decoder layers [start, end) the session opened and exactly the
 * positions the stage ran; the client key is the session's peer; tokens <=
 * positions; the client's signature verifies; the terms (version,
 * governance state) are ones the node accepts (`terms`); and neither this
 * outbox nor the chain (`spent`) has seen the (client, nonce) for this
 * stage. So a stage never co-signs a receipt the fold would skip for
 * reasons of its own making, and never signs two receipts of one nonce.
 *
 * Ordering and durability: receipts live in memory until published; a
 * flush writes one block per batch through the (publishing) store, in the
 * order they were co-signed, and removes them only once the block is
 * stored. A crash loses the unpublished receipts (the stage's loss, never
 * a client's: nothing is paid without the block).
 */
import { toHex } from '../../protocols/hex.ts'
import { MAX_RECEIPTS_PER_BLOCK, ReceiptCodecError, decodeReceiptBody, receiptMessage } from '../../protocols/receipt.ts'
import { DEFAULT_RECEIPT_BATCH, DEFAULT_RECEIPT_FLUSH_MS } from '../constants.ts'
import { LedgerError, LedgerErrorCode } from './errors.ts'
import { receiptBlock } from './new-blocks.ts'
import { SignatureVerifier, signReceiptBody } from './receipt-signing.ts'
import type { BlockSigner, ChainStoreApi } from '../../chain/types.ts'
import type { ReceiptBody, SignedReceipt } from '../../protocols/receipt.ts'

/** What the stage served in one session, as it counted it. */
export interface ServedSession {
  model: Uint8Array
  /** the session's peer (the client) */
  client: Uint8Array
  layerStart: number
  layerEnd: number
  /** positions the stage ran its layers on */
  positions: number
  /** the weights version the session's OPEN pinned, if any: the receipt must name it */
  version?: Uint8Array
}

export interface ReceiptOutboxInit {
  /** the store that publishes (the daemon's gossips) */
  store(): ChainStoreApi
  /** the stage's identity: its key is every receipt's stage, it signs them and their blocks */
  signer: BlockSigner
  /** why the node refuses a receipt's version or governance state (null: accepted) */
  terms(body: ReceiptBody): Promise<string | null> | string | null
  /** true when the chain already judged the receipt's (client, stage, nonce) */
  spent?(body: ReceiptBody): Promise<boolean> | boolean
  /** parents to list besides the model (the ledger head) */
  parents?(model: Uint8Array): Promise<Uint8Array[]> | Uint8Array[]
  /** receipts per block (default DEFAULT_RECEIPT_BATCH, at most MAX_RECEIPTS_PER_BLOCK) */
  batchSize?: number
  /** longest a receipt waits to be published, ms (default DEFAULT_RECEIPT_FLUSH_MS) */
  flushIntervalMs?: number
  onEvent?(event: 'cosigned' | 'refused' | 'published', count: number): void
}

/** Why a receipt does not describe the session the stage served (null: it does). */
function sessionMismatch (r: ReceiptBody, served: ServedSession, stage: Uint8Array): string | null {
  if (toHex(r.stage) !== toHex(stage)) {
    return 'the receipt names another stage'
  }
  if (toHex(r.client) !== toHex(served.client)) {
    return 'the receipt names another client than the session\'s peer'
  }
  if (toHex(r.model) !== toHex(served.model) || r.layerStart !== served.layerStart || r.layerEnd !== served.layerEnd) {
    return `the receipt names another model or layers than the session ([${r.layerStart}, ${r.layerEnd}) vs [${served.layerStart}, ${served.layerEnd}))`
  }
  if (served.version != null && toHex(r.version) !== toHex(served.version)) {
    return `the receipt names version ${toHex(r.version)}, the session ran ${toHex(served.version)}`
  }
  if (r.positions !== served.positions || r.positions < 1) {
    return `the receipt claims ${r.positions} positions, the stage ran ${served.positions}`
  }
  if (r.tokens > r.positions) {
    return `the receipt claims ${r.tokens} tokens over ${r.positions} positions`
  }
  return null
}

export class ReceiptOutbox {
  private readonly init: ReceiptOutboxInit
  private readonly batchSize: number
  private readonly flushIntervalMs: number
  private readonly verifier = new SignatureVerifier()
  private readonly queue: SignedReceipt[] = []
  /** `client:nonce` co-signed by this stage since start */
  private readonly signed = new Set<string>()
  private timer?: ReturnType<typeof setTimeout>
  private flushing: Promise<unknown> = Promise.resolve()
  private running = false

  constructor (init: ReceiptOutboxInit) {
    this.init = init
    this.batchSize = Math.max(1, Math.min(MAX_RECEIPTS_PER_BLOCK, init.batchSize ?? DEFAULT_RECEIPT_BATCH))
    this.flushIntervalMs = init.flushIntervalMs ?? DEFAULT_RECEIPT_FLUSH_MS
  }

  /** receipts co-signed and not yet in a stored block */
  get pending (): number {
    return this.queue.length
  }

  start (): void {
    this.running = true
  }

  /** stops the timer and publishes what is pending */
  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    this.timer = undefined
    await this.flush()
  }

  private refuse (message: string): never {
    this.init.onEvent?.('refused', 1)
    throw new LedgerError(LedgerErrorCode.RECEIPT, message)
  }

  /** Checks a client-signed receipt against `served` (file comment), signs it, and queues it. */
  async cosign (body: Uint8Array, clientSig: Uint8Array, served: ServedSession): Promise<SignedReceipt> {
    let r: ReceiptBody
    try {
      r = decodeReceiptBody(body)
    } catch (err) {
      if (err instanceof ReceiptCodecError) {
        this.refuse(`the receipt does not decode: ${err.message}`)
      }
      throw err
    }
    const mismatch = sessionMismatch(r, served, this.init.signer.publicKey)
    if (mismatch != null) {
      this.refuse(mismatch)
    }
    if (!this.verifier.verify(r.client, receiptMessage(body), clientSig)) {
      this.refuse('the client\'s signature of the receipt does not verify')
    }
    const refusal = await this.init.terms(r)
    if (refusal != null) {
      this.refuse(`the receipt's terms are refused: ${refusal}`)
    }
    const nonceKey = `${toHex(r.client)}:${r.nonce}`
    if (this.signed.has(nonceKey) || (await this.init.spent?.(r)) === true) {
      this.refuse(`the client's nonce ${r.nonce} was used with this stage before`)
    }
    this.signed.add(nonceKey)
    const receipt: SignedReceipt = { ...r, clientSig: Uint8Array.from(clientSig), stageSig: await signReceiptBody(body, this.init.signer) }
    this.queue.push(receipt)
    this.init.onEvent?.('cosigned', 1)
    if (this.queue.length >= this.batchSize) {
      void this.flush().catch(() => {})
    } else if (this.running && this.timer == null) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        void this.flush().catch(() => {})
      }, this.flushIntervalMs)
      this.timer.unref?.()
    }
    return receipt
  }

  /**
   * Publishes the pending receipts, one Receipt block per model and batch;
   * returns the block ids written. Flushes run one at a time. A block that
   * cannot be stored leaves its receipts queued (the error is thrown).
   */
  async flush (): Promise<string[]> {
    const run = this.flushing.then(async () => this.flushNow())
    this.flushing = run.catch(() => {})
    return run
  }

  private async flushNow (): Promise<string[]> {
    const ids: string[] = []
    while (this.queue.length > 0) {
      const model = toHex(this.queue[0].model)
      const batch = this.queue.filter(r => toHex(r.model) === model).slice(0, this.batchSize)
      const modelId = batch[0].model
      const block = await this.init.store().createBlock(receiptBlock(modelId, batch, (await this.init.parents?.(modelId)) ?? []), this.init.signer)
      const published = new Set(batch)
      for (let i = this.queue.length - 1; i >= 0; i--) {
        if (published.has(this.queue[i])) {
          this.queue.splice(i, 1)
        }
      }
      ids.push(toHex(block.id))
      this.init.onEvent?.('published', batch.length)
    }
    return ids
  }
}

export function createReceiptOutbox (init: ReceiptOutboxInit): ReceiptOutbox {
  return new ReceiptOutbox(init)
}
