/**
 * Header rules of the learning blocks (protocols/learning-blocks.md): Delta
 * (chain B), Proposal, Attestation, Motion, Vote and Params (chain A). Each
 * rule has its own ChainError code so rejections are counted per rule.
 *
 * `validateLearningHeader` holds the rules that need only the header (the
 * fields, the payload size, the parents a block must list, an attestation's
 * seed signature); `validateLearningParents` the rules that need the parents'
 * headers (their types, models, authors, units). Anything that needs a
 * payload or the validator set is the fold's business (src/learning/fold/).
 */
import { verify } from 'node:crypto'
import { MAX_ATTESTATION_BYTES } from '../protocols/attestation.ts'
import { isDeltaCodec } from '../protocols/delta.ts'
import { toHex } from '../protocols/hex.ts'
import {
  AttestationField, DeltaField, MotionField, MotionKind, POL_SEED_DOMAIN, ParamsField, ProposalField, REASON_PATTERN,
  Reason, Verdict, VoteField, isMotionKind
} from '../protocols/learning-blocks.ts'
import { VALIDATOR_KEY_LENGTH } from '../protocols/motion.ts'
import { MAX_PARAMS_BYTES } from '../protocols/params.ts'
import { equalBytes } from '../protocols/pb-wire.ts'
import { ed25519PublicKey } from './block-crypto.ts'
import { ID_LENGTH, SIGNATURE_LENGTH } from './constants.ts'
import { ChainError, ChainErrorCode } from './errors.ts'
import { BlockType } from './types.ts'
import type { BlockHeader, SignedHeader } from './types.ts'

/** The kind a field must have: 32-byte id, 64-byte signature, uint, uint32, string. */
type FieldKind = 'id' | 'sig' | 'uint' | 'uint32' | 'string'

interface Opts { blockId?: string }

const TYPE_NAMES: Partial<Record<BlockType, string>> = {
  [BlockType.Delta]: 'Delta',
  [BlockType.Proposal]: 'Proposal',
  [BlockType.Attestation]: 'Attestation',
  [BlockType.Motion]: 'Motion',
  [BlockType.Vote]: 'Vote',
  [BlockType.Params]: 'Params'
}

/** Per type: its exact field set, and its codes for fields, payload and parents. */
const RULES: Partial<Record<BlockType, { fields: Record<string, FieldKind>, codes: { fields: ChainErrorCode, payload: ChainErrorCode, parent: ChainErrorCode } }>> = {
  [BlockType.Delta]: {
    fields: { [DeltaField.MODEL]: 'id', [DeltaField.UNIT]: 'uint32', [DeltaField.BASE]: 'id', [DeltaField.CODEC]: 'string', [DeltaField.TENSORS]: 'uint' },
    codes: { fields: ChainErrorCode.DELTA_FIELDS, payload: ChainErrorCode.DELTA_PAYLOAD, parent: ChainErrorCode.DELTA_PARENT }
  },
  [BlockType.Proposal]: {
    fields: {
      [ProposalField.MODEL]: 'id',
      [ProposalField.BASE]: 'id',
      [ProposalField.GOVERNANCE]: 'id',
      [ProposalField.DATASET]: 'id',
      [ProposalField.CLAIMED_BASE]: 'uint',
      [ProposalField.CLAIMED_AFTER]: 'uint'
    },
    codes: { fields: ChainErrorCode.PROPOSAL_FIELDS, payload: ChainErrorCode.PROPOSAL_PAYLOAD, parent: ChainErrorCode.PROPOSAL_PARENT }
  },
  [BlockType.Attestation]: {
    fields: {
      [AttestationField.MODEL]: 'id',
      [AttestationField.PROPOSAL]: 'id',
      [AttestationField.VERDICT]: 'string',
      [AttestationField.REASON]: 'string',
      [AttestationField.SEED_SIG]: 'sig'
    },
    codes: { fields: ChainErrorCode.ATTESTATION_FIELDS, payload: ChainErrorCode.ATTESTATION_PAYLOAD, parent: ChainErrorCode.ATTESTATION_PARENT }
  },
  [BlockType.Motion]: {
    fields: { [MotionField.MODEL]: 'id', [MotionField.KIND]: 'string', [MotionField.BASE]: 'id' },
    codes: { fields: ChainErrorCode.MOTION_FIELDS, payload: ChainErrorCode.MOTION_PAYLOAD, parent: ChainErrorCode.MOTION_PARENT }
  },
  [BlockType.Vote]: {
    fields: { [VoteField.MODEL]: 'id', [VoteField.MOTION]: 'id' },
    codes: { fields: ChainErrorCode.VOTE_FIELDS, payload: ChainErrorCode.VOTE_PAYLOAD, parent: ChainErrorCode.VOTE_PARENT }
  },
  [BlockType.Params]: {
    fields: { [ParamsField.MODEL]: 'id' },
    codes: { fields: ChainErrorCode.PARAMS_FIELDS, payload: ChainErrorCode.PARAMS_PAYLOAD, parent: ChainErrorCode.PARAMS_PARENT }
  }
}

/** True for the block types this file checks. */
export function isLearningBlockType (type: number): boolean {
  return RULES[type as BlockType] != null
}

const KIND_TEXT: Record<FieldKind, string> = {
  id: `bytes, ${ID_LENGTH} bytes`,
  sig: `bytes, ${SIGNATURE_LENGTH} bytes`,
  uint: 'uint',
  uint32: 'uint32',
  string: 'string'
}

/** Exactly the fields of `spec`, each of its kind; returns nothing (the callers read the values they need). */
function checkFields (header: BlockHeader, name: string, spec: Record<string, FieldKind>, code: ChainErrorCode, opts: Opts): void {
  for (const [key, kind] of Object.entries(spec)) {
    const f = header.fields.get(key)
    const ok = f != null && (
      (kind === 'id' && f.kind === 'bytes' && f.value.length === ID_LENGTH) ||
      (kind === 'sig' && f.kind === 'bytes' && f.value.length === SIGNATURE_LENGTH) ||
      (kind === 'uint' && f.kind === 'uint') ||
      (kind === 'uint32' && f.kind === 'uint' && f.value <= 0xffffffffn) ||
      (kind === 'string' && f.kind === 'string'))
    if (!ok) {
      throw new ChainError(code, `a ${name} block needs field '${key}' (${KIND_TEXT[kind]})`, opts)
    }
  }
  for (const key of header.fields.keys()) {
    if (!Object.hasOwn(spec, key)) {
      throw new ChainError(code, `a ${name} block may not carry field '${key}'`, opts)
    }
  }
}

function bytesField (header: BlockHeader, key: string): Uint8Array {
  return (header.fields.get(key) as { value: Uint8Array }).value
}

function stringField (header: BlockHeader, key: string): string {
  return (header.fields.get(key) as { value: string }).value
}

function uintField (header: BlockHeader, key: string): bigint {
  return (header.fields.get(key) as { value: bigint }).value
}

function listsParent (header: BlockHeader, id: Uint8Array): boolean {
  return header.parents.some(p => equalBytes(p, id))
}

/** The message a validator's seed signature covers: utf8(POL_SEED_DOMAIN) || proposalId. */
export function seedMessage (proposalId: Uint8Array): Uint8Array {
  const domain = Buffer.from(POL_SEED_DOMAIN, 'utf8')
  const out = new Uint8Array(domain.length + proposalId.length)
  out.set(domain)
  out.set(proposalId, domain.length)
  return out
}

/** True iff `seedSig` is `validator`'s Ed25519 signature of seedMessage(proposalId). */
export function verifySeedSignature (validator: Uint8Array, proposalId: Uint8Array, seedSig: Uint8Array): boolean {
  if (seedSig.length !== SIGNATURE_LENGTH || proposalId.length !== ID_LENGTH) {
    return false
  }
  try {
    return verify(null, seedMessage(proposalId), ed25519PublicKey(validator), seedSig)
  } catch {
    return false
  }
}

/**
 * The rules of a learning block that need only its header: exactly its
 * fields, each of its kind (ERR_<TYPE>_BLOCK_FIELDS; a Delta's codec:
 * ERR_DELTA_BLOCK_CODEC); a payload where one is required and none where
 * none is, within the type's limit (ERR_<TYPE>_BLOCK_PAYLOAD); the parents
 * it must list (ERR_<TYPE>_BLOCK_PARENT); an attestation's seed signature
 * (ERR_ATTESTATION_BLOCK_SEED). No-op for other types.
 */
export function validateLearningHeader (header: BlockHeader, blockIdHex?: string): void {
  const rules = RULES[header.type]
  if (rules == null) {
    return
  }
  const opts = { blockId: blockIdHex }
  const name = TYPE_NAMES[header.type] as string
  checkFields(header, name, rules.fields, rules.codes.fields, opts)
  const fieldError = (message: string): ChainError => new ChainError(rules.codes.fields, message, opts)
  const payloadError = (message: string): ChainError => new ChainError(rules.codes.payload, message, opts)
  const parentError = (message: string): ChainError => new ChainError(rules.codes.parent, message, opts)
  const requirePayload = (max?: number): void => {
    if (header.payloadSize === 0n) {
      throw payloadError(`a ${name} block needs a payload`)
    }
    if (max != null && header.payloadSize > BigInt(max)) {
      throw payloadError(`a ${name} payload of ${header.payloadSize} bytes exceeds the limit of ${max}`)
    }
  }
  const forbidPayload = (): void => {
    if (header.payloadSize !== 0n) {
      throw payloadError(`a ${name} block carries no payload (got ${header.payloadSize} bytes)`)
    }
  }
  const requireParent = (key: string, what: string): void => {
    if (!listsParent(header, bytesField(header, key))) {
      throw parentError(`a ${name} block must list its ${what} ('${key}') among its parents`)
    }
  }
  switch (header.type) {
    case BlockType.Delta: {
      const codec = stringField(header, DeltaField.CODEC)
      if (!isDeltaCodec(codec)) {
        throw new ChainError(ChainErrorCode.DELTA_CODEC, `a Delta block's codec is f32, int8, sparse or lowrank, not ${JSON.stringify(codec)}`, opts)
      }
      if (uintField(header, DeltaField.TENSORS) < 1n) {
        throw fieldError(`a Delta block's '${DeltaField.TENSORS}' is at least 1`)
      }
      requirePayload()
      requireParent(DeltaField.MODEL, 'model manifest')
      if (header.parents.length < 2) {
        throw parentError('a Delta block must list the Layer block of its unit among its parents')
      }
      return
    }
    case BlockType.Proposal:
      forbidPayload()
      requireParent(ProposalField.MODEL, 'model manifest')
      requireParent(ProposalField.DATASET, 'Dataset block')
      return
    case BlockType.Attestation: {
      const verdict = stringField(header, AttestationField.VERDICT)
      const reason = stringField(header, AttestationField.REASON)
      if (verdict !== Verdict.ACCEPT && verdict !== Verdict.REJECT) {
        throw fieldError(`an Attestation block's '${AttestationField.VERDICT}' is '${Verdict.ACCEPT}' or '${Verdict.REJECT}', not ${JSON.stringify(verdict)}`)
      }
      if (!REASON_PATTERN.test(reason)) {
        throw fieldError(`an Attestation block's '${AttestationField.REASON}' matches ${REASON_PATTERN.source} (got ${JSON.stringify(reason)})`)
      }
      if ((verdict === Verdict.ACCEPT) !== (reason === Reason.OK)) {
        throw fieldError(`an Attestation block's reason is '${Reason.OK}' exactly when its verdict is '${Verdict.ACCEPT}' (got ${verdict}, ${reason})`)
      }
      requirePayload(MAX_ATTESTATION_BYTES)
      requireParent(AttestationField.PROPOSAL, 'proposal')
      if (!verifySeedSignature(header.author, bytesField(header, AttestationField.PROPOSAL), bytesField(header, AttestationField.SEED_SIG))) {
        throw new ChainError(ChainErrorCode.ATTESTATION_SEED, `the seedSig of an Attestation block is not its author's signature of '${POL_SEED_DOMAIN}' || the proposal id`, opts)
      }
      return
    }
    case BlockType.Motion: {
      const kind = stringField(header, MotionField.KIND)
      if (!isMotionKind(kind)) {
        throw fieldError(`a Motion block's '${MotionField.KIND}' is one of ${Object.values(MotionKind).join(', ')}, not ${JSON.stringify(kind)}`)
      }
      if (kind === MotionKind.SET_PARAMS) {
        requirePayload(MAX_PARAMS_BYTES)
      } else if (header.payloadSize !== BigInt(VALIDATOR_KEY_LENGTH)) {
        throw payloadError(`a ${kind} payload is the ${VALIDATOR_KEY_LENGTH}-byte key (got ${header.payloadSize} bytes)`)
      }
      requireParent(MotionField.MODEL, 'model manifest')
      return
    }
    case BlockType.Vote:
      forbidPayload()
      requireParent(VoteField.MOTION, 'motion')
      return
    case BlockType.Params:
      requirePayload(MAX_PARAMS_BYTES)
      requireParent(ParamsField.MODEL, 'model manifest')
      break
    default:
      // RULES has no other type
  }
}

/**
 * The rules of a learning block that need its parents' headers (all
 * present): the model parent is a ModelManifest; a Delta lists a Layer block
 * of its model and unit; a Proposal's dataset parent is a Dataset block and
 * its Delta parents (>= 1) name its model and base, are authored by the
 * proposal's author and name distinct units; an Attestation's proposal is a
 * Proposal of its model; a Vote's motion is a Motion of its model; a Params
 * block is authored by the manifest's author. No-op for other types.
 */
export function validateLearningParents (block: SignedHeader, parents: Map<string, SignedHeader>): void {
  const { header } = block
  const rules = RULES[header.type]
  if (rules == null) {
    return
  }
  const opts = { blockId: toHex(block.id) }
  const name = TYPE_NAMES[header.type] as string
  const model = bytesField(header, 'model')
  const parentError = (message: string): ChainError => new ChainError(rules.codes.parent, message, opts)
  const manifest = parents.get(toHex(model))
  if (header.type !== BlockType.Attestation && header.type !== BlockType.Vote) {
    // these list their model manifest (checked with the header)
    if (manifest?.header.type !== BlockType.ModelManifest) {
      throw parentError(`the 'model' parent ${toHex(model)} of a ${name} block is not a ModelManifest block`)
    }
  }
  switch (header.type) {
    case BlockType.Delta: {
      const unit = Number(uintField(header, DeltaField.UNIT))
      const layer = header.parents.some(p => {
        const parent = parents.get(toHex(p))
        if (parent?.header.type !== BlockType.Layer) {
          return false
        }
        // a Layer block's coordinates (validate.ts LAYER_FIELD_MODEL / LAYER_FIELD_UNIT)
        const m = parent.header.fields.get('model')
        const u = parent.header.fields.get('unit')
        return m?.kind === 'bytes' && equalBytes(m.value, model) && u?.kind === 'uint' && u.value === BigInt(unit)
      })
      if (!layer) {
        throw parentError(`a Delta block of unit ${unit} must list a Layer block of its model and unit among its parents`)
      }
      return
    }
    case BlockType.Proposal:
      validateProposalParents(block, parents, opts)
      return
    case BlockType.Attestation: {
      const proposal = parents.get(toHex(bytesField(header, AttestationField.PROPOSAL)))
      if (proposal?.header.type !== BlockType.Proposal) {
        throw parentError(`the '${AttestationField.PROPOSAL}' parent of an Attestation block is not a Proposal block`)
      }
      if (!equalBytes(bytesField(proposal.header, ProposalField.MODEL), model)) {
        throw parentError('an Attestation block names another model than its proposal')
      }
      return
    }
    case BlockType.Vote: {
      const motion = parents.get(toHex(bytesField(header, VoteField.MOTION)))
      if (motion?.header.type !== BlockType.Motion) {
        throw parentError(`the '${VoteField.MOTION}' parent of a Vote block is not a Motion block`)
      }
      if (!equalBytes(bytesField(motion.header, MotionField.MODEL), model)) {
        throw parentError('a Vote block names another model than its motion')
      }
      return
    }
    case BlockType.Params:
      if (!equalBytes((manifest as SignedHeader).header.author, header.author)) {
        throw new ChainError(ChainErrorCode.PARAMS_AUTHOR, 'only the manifest\'s author may publish the Params block of a model', opts)
      }
      break
    default:
      // RULES has no other type
  }
}

function validateProposalParents (block: SignedHeader, parents: Map<string, SignedHeader>, opts: Opts): void {
  const { header } = block
  const model = bytesField(header, ProposalField.MODEL)
  const base = bytesField(header, ProposalField.BASE)
  const dataset = parents.get(toHex(bytesField(header, ProposalField.DATASET)))
  if (dataset?.header.type !== BlockType.Dataset) {
    throw new ChainError(ChainErrorCode.PROPOSAL_PARENT, `the '${ProposalField.DATASET}' parent of a Proposal block is not a Dataset block`, opts)
  }
  const units = new Set<bigint>()
  for (const p of header.parents) {
    const delta = parents.get(toHex(p))
    if (delta?.header.type !== BlockType.Delta) {
      continue
    }
    const idHex = toHex(p)
    if (!equalBytes(bytesField(delta.header, DeltaField.MODEL), model)) {
      throw new ChainError(ChainErrorCode.PROPOSAL_DELTAS, `Delta parent ${idHex} names another model than the proposal`, opts)
    }
    if (!equalBytes(bytesField(delta.header, DeltaField.BASE), base)) {
      throw new ChainError(ChainErrorCode.PROPOSAL_DELTAS, `Delta parent ${idHex} applies to another version than the proposal's base`, opts)
    }
    if (!equalBytes(delta.header.author, header.author)) {
      throw new ChainError(ChainErrorCode.PROPOSAL_DELTA_AUTHOR, `Delta parent ${idHex} is authored by another key than the proposal: a proposer proposes only its own deltas`, opts)
    }
    const unit = uintField(delta.header, DeltaField.UNIT)
    if (units.has(unit)) {
      throw new ChainError(ChainErrorCode.PROPOSAL_DELTA_UNITS, `two Delta parents of unit ${unit}: a proposal has at most one delta per unit`, opts)
    }
    units.add(unit)
  }
  if (units.size === 0) {
    throw new ChainError(ChainErrorCode.PROPOSAL_DELTAS, 'a Proposal block lists at least one Delta block among its parents', opts)
  }
}
