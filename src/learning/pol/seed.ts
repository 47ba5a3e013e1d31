/**
 * A validator's sample seed (protocols/attestation.md, "Seed and sample"):
 * seedSig = Ed25519_sign(validatorKey, utf8("bly/pol-seed/v1") || proposalId),
 * a deterministic RFC 8032 signature that no one without the validator's
 * key can compute before the validator publishes it, and anyone can verify
 * with the validator's public key. The windows a validator measures on a
 * dataset are the first `m` of a Fisher-Yates shuffle of the dataset's eval
 * window numbers (ascending) driven by the PRNG keyed with sha256(seedSig)
 * (src/protocols/sample.ts).
 */
import { SIGNATURE_LENGTH } from '../../chain/constants.ts'
import { seedMessage, verifySeedSignature } from '../../chain/validate-learning.ts'
import { sampleIndices } from '../../protocols/sample.ts'
import type { BlockSigner } from '../../chain/types.ts'

export { seedMessage }

/** The validator's seedSig of `proposalId` (what its Attestation's `seedSig` field carries). */
export async function signSeed (signer: BlockSigner, proposalId: Uint8Array): Promise<Uint8Array> {
  const sig = await signer.sign(seedMessage(proposalId))
  if (!(sig instanceof Uint8Array) || sig.length !== SIGNATURE_LENGTH) {
    throw new TypeError('the signer returned a malformed signature')
  }
  return sig
}

/** True iff `seedSig` is `validator`'s signature of seedMessage(proposalId). */
export function verifySeed (validator: Uint8Array, proposalId: Uint8Array, seedSig: Uint8Array): boolean {
  return verifySeedSignature(validator, proposalId, seedSig)
}

/**
 * The eval windows a validator with this seedSig measures: the first
 * min(m, evalWindows.length) of the shuffle, in sample order. `evalWindows`
 * is the dataset's eval window numbers, ascending (DatasetSplit.evalWindows).
 */
export function sampleFor (seedSig: Uint8Array, evalWindows: ArrayLike<number>, m: number): number[] {
  return sampleIndices(evalWindows, seedSig, m)
}
