/**
 * The fold of a model's learning path (protocols/versions.md,
 * protocols/motion.md, protocols/attestation.md): entry points and types.
 */
export { foldModel, foldRecords } from './fold.ts'
export type { FoldOptions } from './fold.ts'
export { readModelRecords } from './blocks.ts'
export { EvalWindowsCache } from './eval-windows.ts'
export type { EvalWindowsCacheInit } from './eval-windows.ts'
export { evaluateAttestation, judgeAttestations } from './attestations.ts'
export { foldGovernance } from './governance.ts'
export { genesisOf } from './genesis.ts'
export { foldProposals, commonReason, medianGain } from './versions.ts'
export { initialGovernanceId, initialVersionId, nextGovernanceId, nextVersionId } from './ids.ts'
export { findProposal, findVersion, isValidator, pendingMotions, proposalsToAttest, samePendingMotion } from './query.ts'
export { FoldError, FoldErrorCode } from './errors.ts'
export type * from './types.ts'
