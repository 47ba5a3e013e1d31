/**
 * The two ends of the receipt exchange at a session's close (docs/ledger.md),
 * as the pipeline takes them (structurally: learning does not import the
 * pipeline): the client's signer, which turns what a stage did into a
 * canonical receipt signed by the client, and the stage's handler, which
 * hands a client's receipt with the stage's own count to its outbox; and the
 * admission rule that serves a client without balance at `background`
 * priority (for free: its receipts are skipped by the fold).
 *
 * Nonces: a client numbers its receipts per process from its start time in
 * microseconds, so a restarted client never reuses one with a stage (a
 * stage refuses a nonce it or the chain has seen).
 */
import { createHash, randomBytes } from 'node:crypto'
import { fromHex } from '../../protocols/hex.ts'
import { encodeReceiptBody } from '../../protocols/receipt.ts'
import { parsePeerKey } from './commands.ts'
import { signReceiptBody } from './receipt-signing.ts'
import type { ReceiptOutbox } from './outbox.ts'
import type { BlockSigner } from '../../chain/types.ts'

/** What a stage did in one session, as the client counted it (pipeline StageWork). */
export interface ClientStageWork {
  /** the stage's peer id */
  stage: string
  sessionId: number
  start: number
  end: number
  positions: number
  tokens: number
  /** the weights version the session pinned (hex); absent: the live version */
  version?: string
}

/** A session as the stage served it (pipeline ServedStageSession). */
export interface StageServedWork {
  sessionId: number
  /** hex */
  modelId: string
  /** the client's peer id */
  client: string
  start: number
  end: number
  positions: number
  /** the weights version the OPEN pinned (hex), if any */
  version?: string
}

/** The terms a client signs: the version served and the governance state whose price applies. */
export interface ReceiptTerms {
  version: Uint8Array
  governance: Uint8Array
}

export interface ClientReceiptSignerInit {
  /** the model the generation runs on */
  model: Uint8Array
  /** the client's identity */
  signer: BlockSigner
  /** the terms now (the live version, the current governance state); null: sign nothing. A session that pinned a version names that one instead of the live one */
  terms(): Promise<ReceiptTerms | null>
  /** ms since the epoch (tests) */
  now?(): number
}

/** The client's receipt signer of one generation. */
export class ClientReceiptSigner {
  private readonly init: ClientReceiptSignerInit
  private readonly salt = randomBytes(16)
  private nonce: bigint

  constructor (init: ClientReceiptSignerInit, firstNonce: bigint) {
    this.init = init
    this.nonce = firstNonce
  }

  /** The receipt body of `work` and the client's signature, or null when there are no terms to sign. */
  async sign (work: ClientStageWork): Promise<{ body: Uint8Array, clientSig: Uint8Array } | null> {
    const terms = await this.init.terms()
    if (terms == null) {
      return null
    }
    const session = createHash('sha256').update(this.salt).update(String(work.sessionId)).digest().subarray(0, 16)
    const body = encodeReceiptBody({
      model: this.init.model,
      version: work.version != null ? fromHex(work.version) : terms.version,
      governance: terms.governance,
      session: new Uint8Array(session),
      client: this.init.signer.publicKey,
      stage: parsePeerKey(work.stage),
      nonce: this.nonce++,
      layerStart: work.start,
      layerEnd: work.end,
      positions: work.positions,
      tokens: Math.min(work.tokens, work.positions),
      time: BigInt(this.init.now?.() ?? Date.now())
    })
    return { body, clientSig: await signReceiptBody(body, this.init.signer) }
  }
}

/**
 * The receipt signers of one client process: one per model, nonces
 * counting up from the process's start time in microseconds (file comment).
 */
export class ClientReceipts {
  private readonly signer: BlockSigner
  private readonly terms: (model: Uint8Array) => Promise<ReceiptTerms | null>
  private readonly byModel = new Map<string, ClientReceiptSigner>()
  private next: bigint

  constructor (signer: BlockSigner, terms: (model: Uint8Array) => Promise<ReceiptTerms | null>, now = Date.now()) {
    this.signer = signer
    this.terms = terms
    this.next = BigInt(now) * 1000n
  }

  /** The signer for generations on `modelHex`. */
  forModel (modelHex: string): ClientReceiptSigner {
    let s = this.byModel.get(modelHex)
    if (s == null) {
      const model = fromHex(modelHex)
      // models get disjoint nonce ranges: 2^40 receipts each
      s = new ClientReceiptSigner({ model, signer: this.signer, terms: async () => this.terms(model) }, this.next)
      this.next += 1n << 40n
      this.byModel.set(modelHex, s)
    }
    return s
  }
}

/** The stage's receipt handler over its outbox: the stage's own count of the session, and the client's key from its peer id. */
export function stageReceipts (outbox: Pick<ReceiptOutbox, 'cosign'>): { cosign(served: StageServedWork, body: Uint8Array, clientSig: Uint8Array): Promise<void> } {
  return {
    cosign: async (served, body, clientSig) => {
      await outbox.cosign(body, clientSig, {
        model: fromHex(served.modelId),
        client: parsePeerKey(served.client),
        layerStart: served.start,
        layerEnd: served.end,
        positions: served.positions,
        ...(served.version != null ? { version: fromHex(served.version) } : {})
      })
    }
  }
}

/** The admission rule of docs/ledger.md: a client with no balance on the model is served at background priority (0), others as they ask. */
export function priorityForBalance (balance: bigint | undefined, requested: number): number {
  return balance != null && balance > 0n ? requested : 0
}
