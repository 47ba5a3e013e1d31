/**
 * Builders of the learning blocks a node publishes (protocols/learning-blocks.md):
 * each returns the NewBlock to pass to ChainStore#createBlock with the
 * node's signer, with its fields, parents and canonical payload, so callers
 * (model import, `delta propose`, the validator service, `blyd validators`)
 * never assemble headers by hand. The store checks every header rule again
 * when it takes the block.
 */
import { BlockType, ChainId } from '../chain/types.ts'
import { encodeAttestationPayload } from '../protocols/attestation.ts'
import { AttestationField, DeltaField, MotionField, ParamsField, ProposalField, Reason, Verdict, VoteField } from '../protocols/learning-blocks.ts'
import { encodeMotionPayload } from '../protocols/motion.ts'
import { encodeParams } from '../protocols/params.ts'
import type { FieldValue, NewBlock } from '../chain/types.ts'
import type { DatasetMeasurement } from '../protocols/attestation.ts'
import type { DeltaCodec } from '../protocols/delta.ts'
import type { MotionBody } from '../protocols/motion.ts'
import type { ParamsBody } from '../protocols/params.ts'

const id = (value: Uint8Array): FieldValue => ({ kind: 'bytes', value })
const uint = (value: number | bigint): FieldValue => ({ kind: 'uint', value: BigInt(value) })
const str = (value: string): FieldValue => ({ kind: 'string', value })

/** The genesis Params block of `model` (its author must be the manifest's). */
export function paramsBlock (model: Uint8Array, params: ParamsBody): NewBlock {
  return { chain: ChainId.A, type: BlockType.Params, parents: [model], fields: { [ParamsField.MODEL]: id(model) }, payload: encodeParams(params) }
}

/** A Motion on governance state `base`. */
export function motionBlock (model: Uint8Array, base: Uint8Array, body: MotionBody): NewBlock {
  return {
    chain: ChainId.A,
    type: BlockType.Motion,
    parents: [model],
    fields: { [MotionField.MODEL]: id(model), [MotionField.KIND]: str(body.kind), [MotionField.BASE]: id(base) },
    payload: encodeMotionPayload(body)
  }
}

/** A Vote for `motion`. */
export function voteBlock (model: Uint8Array, motion: Uint8Array): NewBlock {
  return { chain: ChainId.A, type: BlockType.Vote, parents: [motion], fields: { [VoteField.MODEL]: id(model), [VoteField.MOTION]: id(motion) } }
}

export interface DeltaBlockInit {
  model: Uint8Array
  /** the Layer block of `unit` (one of store.byModelUnit(model, unit)) */
  layer: Uint8Array
  unit: number
  /** the version the delta applies to */
  base: Uint8Array
  codec: DeltaCodec
  tensors: number
  /** the canonical delta payload (zstd-compressed body; protocols/delta.md) */
  payload: Uint8Array | AsyncIterable<Uint8Array>
}

/** A Delta of one unit (chain B). */
export function deltaBlock (init: DeltaBlockInit): NewBlock {
  return {
    chain: ChainId.B,
    type: BlockType.Delta,
    parents: [init.model, init.layer],
    fields: {
      [DeltaField.MODEL]: id(init.model),
      [DeltaField.UNIT]: uint(init.unit),
      [DeltaField.BASE]: id(init.base),
      [DeltaField.CODEC]: str(init.codec),
      [DeltaField.TENSORS]: uint(init.tensors)
    },
    payload: init.payload
  }
}

export interface ProposalBlockInit {
  model: Uint8Array
  /** the live version the deltas apply to */
  base: Uint8Array
  /** the current governance state id */
  governance: Uint8Array
  dataset: Uint8Array
  /** the proposer's Delta blocks, one per unit */
  deltas: Uint8Array[]
  /** the proposer's own eval losses, micro-nats (information only) */
  claimedBase: bigint
  claimedAfter: bigint
}

/** A Proposal of the proposer's Delta blocks. */
export function proposalBlock (init: ProposalBlockInit): NewBlock {
  return {
    chain: ChainId.A,
    type: BlockType.Proposal,
    parents: [init.model, init.dataset, ...init.deltas],
    fields: {
      [ProposalField.MODEL]: id(init.model),
      [ProposalField.BASE]: id(init.base),
      [ProposalField.GOVERNANCE]: id(init.governance),
      [ProposalField.DATASET]: id(init.dataset),
      [ProposalField.CLAIMED_BASE]: uint(init.claimedBase),
      [ProposalField.CLAIMED_AFTER]: uint(init.claimedAfter)
    }
  }
}

export interface AttestationBlockInit {
  model: Uint8Array
  proposal: Uint8Array
  /** signSeed(validator, proposal) */
  seedSig: Uint8Array
  /** `ok` to accept, else the reject reason (a rule reason, or stale, malformed, ...) */
  reason: string
  /** the proposal's dataset then the regression datasets in params order; empty for a structural reject */
  measurements: DatasetMeasurement[]
}

/** An Attestation: verdict accept exactly when `reason` is `ok`. */
export function attestationBlock (init: AttestationBlockInit): NewBlock {
  return {
    chain: ChainId.A,
    type: BlockType.Attestation,
    parents: [init.proposal],
    fields: {
      [AttestationField.MODEL]: id(init.model),
      [AttestationField.PROPOSAL]: id(init.proposal),
      [AttestationField.VERDICT]: str(init.reason === Reason.OK ? Verdict.ACCEPT : Verdict.REJECT),
      [AttestationField.REASON]: str(init.reason),
      [AttestationField.SEED_SIG]: id(init.seedSig)
    },
    payload: encodeAttestationPayload(init.measurements)
  }
}
