/**
 * Version and governance state ids (protocols/versions.md, protocols/motion.md):
 * V0 = sha256("bly/version/v1" || modelId), and after accepted proposal P,
 * V' = sha256("bly/version/v1" || V || P); G0 = sha256("bly/governance/v1" ||
 * modelId), and after applied motion M, G' = sha256("bly/governance/v1" || G || M).
 */
import { createHash } from 'node:crypto'
import { GOVERNANCE_DOMAIN, VERSION_DOMAIN } from '../../protocols/learning-blocks.ts'

function digest (domain: string, ...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256').update(domain, 'utf8')
  for (const part of parts) {
    h.update(part)
  }
  return new Uint8Array(h.digest())
}

/** V0 of a model: its base weights, no delta applied. */
export function initialVersionId (modelId: Uint8Array): Uint8Array {
  return digest(VERSION_DOMAIN, modelId)
}

/** The version after accepting `proposalId` on `version`. */
export function nextVersionId (version: Uint8Array, proposalId: Uint8Array): Uint8Array {
  return digest(VERSION_DOMAIN, version, proposalId)
}

/** G0 of a model: the importer alone in the set, the genesis params. */
export function initialGovernanceId (modelId: Uint8Array): Uint8Array {
  return digest(GOVERNANCE_DOMAIN, modelId)
}

/** The governance state after applying `motionId` on `governance`. */
export function nextGovernanceId (governance: Uint8Array, motionId: Uint8Array): Uint8Array {
  return digest(GOVERNANCE_DOMAIN, governance, motionId)
}
