/**
 * Reads the learning blocks of one model from a chain store into records
 * (types.ts): the Params, Motion, Vote, Proposal and Attestation blocks
 * naming the model, each proposal's Delta parents, and the small payloads
 * (params, motion, attestation) decoded. Header rules were checked when the
 * store took each block (src/chain/validate-learning.ts), so a header field
 * of the wrong kind here is store corruption (FoldError). A payload not
 * stored yet or one that does not decode is recorded, not thrown: the fold
 * reports it.
 */
import { BlockType } from '../../chain/types.ts'
import { AttestationCodecError, decodeAttestationPayload } from '../../protocols/attestation.ts'
import { AttestationField, DeltaField, MotionField, ProposalField, VoteField } from '../../protocols/learning-blocks.ts'
import { MotionCodecError, decodeMotionPayload } from '../../protocols/motion.ts'
import { ParamsError, decodeParams } from '../../protocols/params.ts'
import { FoldError, FoldErrorCode } from './errors.ts'
import type { AttestationRecord, BlockRef, DeltaRef, ModelRecords, MotionRecord, ParamsRecord, ProposalRecord, VoteRecord } from './types.ts'
import type { ChainStoreApi, StoredBlock } from '../../chain/types.ts'

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function corrupt (block: StoredBlock, key: string): FoldError {
  return new FoldError(FoldErrorCode.CORRUPT, `stored block ${toHex(block.id)} (type ${block.header.type}) has no valid field '${key}'`)
}

function bytesField (block: StoredBlock, key: string): Uint8Array {
  const f = block.header.fields.get(key)
  if (f?.kind !== 'bytes') {
    throw corrupt(block, key)
  }
  return f.value
}

function stringField (block: StoredBlock, key: string): string {
  const f = block.header.fields.get(key)
  if (f?.kind !== 'string') {
    throw corrupt(block, key)
  }
  return f.value
}

function uintField (block: StoredBlock, key: string): bigint {
  const f = block.header.fields.get(key)
  if (f?.kind !== 'uint') {
    throw corrupt(block, key)
  }
  return f.value
}

function ref (block: StoredBlock): BlockRef {
  return { id: block.id, idHex: toHex(block.id), author: block.header.author, authorHex: toHex(block.header.author) }
}

function byId<T extends { idHex: string }> (a: T, b: T): number {
  return a.idHex < b.idHex ? -1 : 1
}

/** The whole payload of a stored block (every chunk verified by the store); undefined when not complete locally. */
export async function readSmallPayload (store: ChainStoreApi, block: StoredBlock): Promise<Uint8Array | undefined> {
  if (!block.payloadComplete) {
    return undefined
  }
  const parts: Uint8Array[] = []
  for await (const chunk of store.readPayload(block.id)) {
    parts.push(chunk)
  }
  return new Uint8Array(Buffer.concat(parts))
}

async function blocksOfModel (store: ChainStoreApi, type: BlockType, modelHex: string): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for await (const block of store.byType(type)) {
    const model = block.header.fields.get('model')
    if (model?.kind === 'bytes' && toHex(model.value) === modelHex) {
      out.push(block)
    }
  }
  return out
}

function codecMessage (err: any): string {
  return `${String(err?.code ?? 'ERR')}: ${String(err?.message ?? err)}`
}

async function paramsRecord (store: ChainStoreApi, block: StoredBlock): Promise<ParamsRecord> {
  const bytes = await readSmallPayload(store, block)
  if (bytes == null) {
    return ref(block)
  }
  try {
    return { ...ref(block), body: decodeParams(bytes) }
  } catch (err) {
    if (!(err instanceof ParamsError)) {
      throw err
    }
    return { ...ref(block), error: codecMessage(err) }
  }
}

async function motionRecord (store: ChainStoreApi, block: StoredBlock): Promise<MotionRecord> {
  const kind = stringField(block, MotionField.KIND)
  const base = toHex(bytesField(block, MotionField.BASE))
  const bytes = await readSmallPayload(store, block)
  if (bytes == null) {
    return { ...ref(block), kind, base, payloadMissing: true }
  }
  try {
    return { ...ref(block), kind, base, payloadMissing: false, body: decodeMotionPayload(kind, bytes) }
  } catch (err) {
    if (!(err instanceof MotionCodecError)) {
      throw err
    }
    return { ...ref(block), kind, base, payloadMissing: false, error: codecMessage(err) }
  }
}

async function attestationRecord (store: ChainStoreApi, block: StoredBlock): Promise<AttestationRecord> {
  const record = {
    ...ref(block),
    proposal: toHex(bytesField(block, AttestationField.PROPOSAL)),
    verdict: stringField(block, AttestationField.VERDICT),
    reason: stringField(block, AttestationField.REASON),
    seedSig: bytesField(block, AttestationField.SEED_SIG)
  }
  const bytes = await readSmallPayload(store, block)
  if (bytes == null) {
    return { ...record, payloadMissing: true }
  }
  try {
    return { ...record, payloadMissing: false, measurements: decodeAttestationPayload(bytes) }
  } catch (err) {
    if (!(err instanceof AttestationCodecError)) {
      throw err
    }
    return { ...record, payloadMissing: false, error: codecMessage(err) }
  }
}

async function proposalRecord (store: ChainStoreApi, block: StoredBlock): Promise<ProposalRecord> {
  const deltas: DeltaRef[] = []
  for (const parent of block.header.parents) {
    const p = await store.get(parent)
    if (p?.header.type === BlockType.Delta) {
      deltas.push({ id: toHex(p.id), unit: Number(uintField(p, DeltaField.UNIT)), codec: stringField(p, DeltaField.CODEC) })
    }
  }
  deltas.sort((a, b) => a.unit - b.unit)
  const dataset = bytesField(block, ProposalField.DATASET)
  return {
    ...ref(block),
    base: toHex(bytesField(block, ProposalField.BASE)),
    governance: toHex(bytesField(block, ProposalField.GOVERNANCE)),
    dataset,
    datasetHex: toHex(dataset),
    claimedBase: uintField(block, ProposalField.CLAIMED_BASE),
    claimedAfter: uintField(block, ProposalField.CLAIMED_AFTER),
    deltas
  }
}

/**
 * Every learning block of model `modelId` in `store`, decoded. Throws
 * FoldError ERR_FOLD_MODEL_NOT_FOUND when the id is no stored ModelManifest.
 */
export async function readModelRecords (store: ChainStoreApi, modelId: Uint8Array): Promise<ModelRecords> {
  const manifest = await store.get(modelId)
  if (manifest?.header.type !== BlockType.ModelManifest) {
    throw new FoldError(FoldErrorCode.MODEL_NOT_FOUND, `no model manifest ${toHex(modelId)} in the store`)
  }
  const modelHex = toHex(modelId)
  const params: ParamsRecord[] = []
  for (const block of await blocksOfModel(store, BlockType.Params, modelHex)) {
    params.push(await paramsRecord(store, block))
  }
  const motions: MotionRecord[] = []
  for (const block of await blocksOfModel(store, BlockType.Motion, modelHex)) {
    motions.push(await motionRecord(store, block))
  }
  const votes: VoteRecord[] = (await blocksOfModel(store, BlockType.Vote, modelHex))
    .map(block => ({ ...ref(block), motion: toHex(bytesField(block, VoteField.MOTION)) }))
  const proposals: ProposalRecord[] = []
  for (const block of await blocksOfModel(store, BlockType.Proposal, modelHex)) {
    proposals.push(await proposalRecord(store, block))
  }
  const attestations: AttestationRecord[] = []
  for (const block of await blocksOfModel(store, BlockType.Attestation, modelHex)) {
    attestations.push(await attestationRecord(store, block))
  }
  return {
    model: manifest.id,
    modelHex,
    author: manifest.header.author,
    authorHex: toHex(manifest.header.author),
    params: params.sort(byId),
    motions: motions.sort(byId),
    votes: votes.sort(byId),
    proposals: proposals.sort(byId),
    attestations: attestations.sort(byId)
  }
}
