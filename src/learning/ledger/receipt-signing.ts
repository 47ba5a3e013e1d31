/**
 * Signing and verifying receipts (protocols/ledger.md): both the client and
 * the stage sign utf8("bly/receipt/v1") || body with their Ed25519 identity
 * keys. The verifier keeps the public keys it parsed (per instance, never
 * per module), since a fold checks many receipts of few keys.
 */
import { verify } from 'node:crypto'
import { ed25519PublicKey } from '../../chain/block-crypto.ts'
import { encodeReceiptBody, receiptMessage } from '../../protocols/receipt.ts'
import { LedgerError, LedgerErrorCode } from './errors.ts'
import type { BlockSigner } from '../../chain/types.ts'
import type { ReceiptBody, SignedReceipt } from '../../protocols/receipt.ts'
import type { KeyObject } from 'node:crypto'

/** `signer`'s signature of a receipt body (the client's or the stage's). */
export async function signReceiptBody (body: Uint8Array, signer: BlockSigner): Promise<Uint8Array> {
  const sig = await signer.sign(receiptMessage(body))
  if (!(sig instanceof Uint8Array) || sig.length !== 64) {
    throw new LedgerError(LedgerErrorCode.RECEIPT, 'the signer returned a malformed receipt signature')
  }
  return sig
}

/** A receipt signed by both parties (tests, the bench, a client and stage in one process). */
export async function coSignReceipt (r: ReceiptBody, client: BlockSigner, stage: BlockSigner): Promise<SignedReceipt> {
  const body = encodeReceiptBody(r)
  return { ...r, clientSig: await signReceiptBody(body, client), stageSig: await signReceiptBody(body, stage) }
}

/** Ed25519 verification with each public key parsed once. */
export class SignatureVerifier {
  private readonly keys = new Map<string, KeyObject | null>()
  /** signatures checked (the bench's count) */
  checked = 0

  private keyOf (raw: Uint8Array): KeyObject | null {
    const hex = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex')
    let key = this.keys.get(hex)
    if (key === undefined) {
      try {
        key = ed25519PublicKey(raw)
      } catch {
        key = null
      }
      this.keys.set(hex, key)
    }
    return key
  }

  /** true iff `sig` is `raw`'s signature of `message` */
  verify (raw: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
    this.checked++
    const key = this.keyOf(raw)
    if (key == null || sig.length !== 64) {
      return false
    }
    try {
      return verify(null, message, key, sig)
    } catch {
      return false
    }
  }

  /** both signatures of a receipt whose body bytes are `body` */
  verifyReceipt (r: SignedReceipt, body: Uint8Array): { client: boolean, stage: boolean } {
    const message = receiptMessage(body)
    return { client: this.verify(r.client, message, r.clientSig), stage: this.verify(r.stage, message, r.stageSig) }
  }
}
