/**
 * The structural checks a validator runs on a proposal before measuring it
 * (protocols/attestation.md, "What a validator checks"), each a reject
 * reason, in order: the proposal's base is the live version and its
 * governance state the current one (`stale`); every Delta header declares
 * a payload within the size bound of its unit (`oversize`: refused before
 * any byte is fetched); then per Delta (checkDeltaPayload, on the header
 * and payload alone): it names the proposal's model (`model`) and base
 * (`stale`), its payload decodes canonically with its header's codec
 * (`malformed`; `oversize` when it inflates past the bound) to finite
 * floats (`non-finite`), and holds only tensors of its unit with their
 * shapes (`shape`); and it repeats no delta this node had before
 * (`duplicate`).
 *
 * Duplicates (checkDuplicate): a delta is identified by its payload bytes
 * (the header's chunk hashes) and by sha-256 of its canonical body (the
 * decompressed payload; zstd bytes may differ for one body). A proposal P
 * is a duplicate when
 * - one of its Delta blocks is also a delta of another proposal that this
 * store received before P (a replay of the same blocks, by their author:
 * the chain refuses anyone else's Delta blocks in a proposal), unless that
 * one was rejected only because the governance state moved on, or
 * - one of its deltas d has the payload or body of another Delta block c of
 * the same model and unit that this store received before d, where c is
 * by another author (a copy re-signed as one's own, whether or not the
 * original's Proposal has arrived yet), or c is listed by a proposal that
 * was accepted, rejected on its merits, or is pending on P's version (the
 * same delta proposed again in new blocks). Not a duplicate: the author
 * re-proposing, on the new version, a delta whose proposal was rejected
 * only because the version or governance state moved on (stale,
 * superseded, stale-governance) or is pending on a past version: a rebase.
 * "Before" is this store's (receivedAt, id) order. An original is judged
 * on its merits: its copies arrive after its Delta blocks, which precede
 * its Proposal. The order is this node's own: a node that received a copy
 * before the original (a partition, a faster path) rejects the original
 * instead, and the quorum decides. Only exact copies are caught: a copy
 * re-encoded with another codec, or perturbed, is another delta, judged on
 * its merits like any other.
 */
import { createHash } from 'node:crypto'
import { BlockType } from '../chain/types.ts'
import { DeltaFormatError, DeltaFormatErrorCode } from '../protocols/delta-errors.ts'
import { MAX_DELTA_BODY, decompressDeltaPayload } from '../protocols/delta.ts'
import { toHex } from '../protocols/hex.ts'
import { DeltaField } from '../protocols/learning-blocks.ts'
import { Reason } from '../protocols/learning-blocks.ts'
import { readSmallPayload } from './fold/blocks.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import { decodeDeltaBlock } from './version-weights.ts'
import type { Hex, ModelFold, ProposalExplain } from './fold/types.ts'
import type { LoadedDelta } from './version-weights.ts'
import type { BlockHeader, ChainStoreApi, SignedHeader, StoredBlock } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { ManifestUnit } from '../model/import/manifest.ts'

export type CheckResult =
  | { ok: true, deltas: LoadedDelta[] }
  | { ok: false, reason: string, detail: string }

function reject (reason: string, detail: string): { ok: false, reason: string, detail: string } {
  return { ok: false, reason, detail }
}

function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

const utf8 = new TextEncoder()

/**
 * The largest canonical body a delta of `unit` can have, any codec: per
 * tensor its name, dims and at most 8 bytes per element (f32: 4; int8: 4
 * per row + 1; sparse: 8 + 6 per kept element; lowrank: 4r(rows + cols) <=
 * 8 rows cols), plus the header. Capped at MAX_DELTA_BODY.
 */
export function maxUnitDeltaBody (unit: ManifestUnit): number {
  let n = 64
  for (const t of unit.tensors) {
    const elements = t.shape.reduce((a, b) => a * b, 1)
    n += 32 + utf8.encode(t.name).length + 4 * t.shape.length + 8 * elements
  }
  return Math.min(n, MAX_DELTA_BODY)
}

/** The largest payload (zstd of such a body, incompressible at worst: +1/128 and a frame header). */
export function maxUnitDeltaPayload (unit: ManifestUnit): number {
  const body = maxUnitDeltaBody(unit)
  return body + Math.ceil(body / 128) + 1024
}

/** `stale` unless the proposal is on the live version in the current governance state. */
export function checkBase (fold: ModelFold, proposal: ProposalExplain): CheckResult | undefined {
  if (proposal.base !== fold.live.id) {
    const known = fold.versions.some(v => v.id === proposal.base)
    return reject(Reason.STALE, `the proposal applies to version ${proposal.base.slice(0, 12)}${known ? ' (a past version)' : ''}; the live version is ${fold.live.id.slice(0, 12)}`)
  }
  if (proposal.governance !== fold.governance.current.id) {
    return reject(Reason.STALE, `the proposal names governance state ${proposal.governance.slice(0, 12)}; the current one is ${fold.governance.current.id.slice(0, 12)}`)
  }
  return undefined
}

/** `oversize` when a Delta header declares a payload larger than its unit can need (checked before fetching it). */
export async function checkSizes (store: ChainStoreApi, manifest: ModelManifest, proposal: ProposalExplain): Promise<CheckResult | undefined> {
  for (const d of proposal.deltas) {
    const block = await store.get(Buffer.from(d.id, 'hex'))
    const unit = manifest.units[d.unit]
    if (block == null || unit == null) {
      continue
    }
    const bound = maxUnitDeltaPayload(unit)
    if (block.header.payloadSize > BigInt(bound)) {
      return reject(Reason.OVERSIZE, `delta ${d.id.slice(0, 12)} (unit ${d.unit}) declares a ${block.header.payloadSize}-byte payload; a delta of that unit needs at most ${bound}`)
    }
  }
  return undefined
}

function formatReason (err: DeltaFormatError): string {
  if (err.code === DeltaFormatErrorCode.NON_FINITE) {
    return Reason.NON_FINITE
  }
  if (err.code === DeltaFormatErrorCode.TOO_LARGE) {
    return Reason.OVERSIZE
  }
  return Reason.MALFORMED
}

function bytesField (block: SignedHeader, key: string): string | undefined {
  const f = block.header.fields.get(key)
  return f?.kind === 'bytes' ? Buffer.from(f.value).toString('hex') : undefined
}

/**
 * The checks of one Delta block of a proposal on version `base`, on its
 * header and payload alone (no store; checkDeltas reads them), in order:
 * it names the model (`model`) and `base` (`stale`); its unit is one of the
 * model's and its payload within that unit's bound (`oversize`); the
 * payload decodes canonically with the header's codec (`malformed`;
 * `oversize` when it decompresses past the bound) to finite floats
 * (`non-finite`) and as many tensors as the header says (`malformed`);
 * each tensor is one of the unit's, with its shape (`shape`). The decoded
 * delta when all pass.
 */
export function checkDeltaPayload (manifest: ModelManifest, base: Hex, block: SignedHeader, payload: Uint8Array): { ok: true, delta: LoadedDelta } | { ok: false, reason: string, detail: string } {
  const id = Buffer.from(block.id).toString('hex').slice(0, 12)
  const model = bytesField(block, DeltaField.MODEL)
  if (model !== manifest.idHex) {
    return reject(Reason.MODEL, `delta ${id} names model ${String(model)}, the proposal ${manifest.idHex}`)
  }
  const deltaBase = bytesField(block, DeltaField.BASE)
  if (deltaBase !== base) {
    return reject(Reason.STALE, `delta ${id} applies to version ${String(deltaBase)}, the proposal to ${base}`)
  }
  const unitField = block.header.fields.get(DeltaField.UNIT)
  const unit = unitField?.kind === 'uint' ? manifest.units[Number(unitField.value)] : undefined
  if (unit == null) {
    return reject(Reason.SHAPE, `delta ${id} names unit ${String(unitField?.value)}; the model has ${manifest.units.length}`)
  }
  const bound = maxUnitDeltaPayload(unit)
  if (payload.length > bound) {
    return reject(Reason.OVERSIZE, `delta ${id} (unit ${unit.unit}) has a ${payload.length}-byte payload; a delta of that unit needs at most ${bound}`)
  }
  let loaded: LoadedDelta
  try {
    loaded = decodeDeltaBlock(block, payload, { maxBodyBytes: maxUnitDeltaBody(unit) })
  } catch (err) {
    if (err instanceof DeltaFormatError) {
      return reject(formatReason(err), `delta ${id} (unit ${unit.unit}): ${err.code}: ${err.message}`)
    }
    if (err instanceof LearningError) {
      return reject(Reason.MALFORMED, `delta ${id}: ${err.code}: ${err.message}`)
    }
    throw err
  }
  const tensors = block.header.fields.get(DeltaField.TENSORS)
  if (tensors?.kind !== 'uint' || tensors.value !== BigInt(loaded.delta.tensors.length)) {
    return reject(Reason.MALFORMED, `delta ${id}: its header says ${String(tensors?.value)} tensors, its payload holds ${loaded.delta.tensors.length}`)
  }
  for (const t of loaded.delta.tensors) {
    const spec = unit.tensors.find(s => s.name === t.name)
    if (spec == null) {
      return reject(Reason.SHAPE, `delta ${id} (unit ${unit.unit}) changes ${t.name}, which unit ${unit.unit} does not hold`)
    }
    if (spec.shape.length !== t.dims.length || spec.shape.some((x, i) => x !== t.dims[i])) {
      return reject(Reason.SHAPE, `delta ${id}: ${t.name} has dims [${t.dims.join(', ')}], the model [${spec.shape.join(', ')}]`)
    }
  }
  return { ok: true, delta: loaded }
}

/**
 * Reads every delta of `proposal` (payloads must be stored: the caller
 * fetched them; LearningError PAYLOAD_MISSING otherwise) and checks each
 * with checkDeltaPayload. Deltas unit ascending.
 */
export async function checkDeltas (store: ChainStoreApi, manifest: ModelManifest, proposal: ProposalExplain): Promise<CheckResult> {
  const out: LoadedDelta[] = []
  for (const d of proposal.deltas) {
    const block = await store.get(Buffer.from(d.id, 'hex'))
    if (block?.header.type !== BlockType.Delta) {
      throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `no Delta block ${d.id} in the store`)
    }
    const payload = await readSmallPayload(store, block)
    if (payload == null) {
      throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `the payload of Delta block ${d.id} is not stored here yet`)
    }
    const checked = checkDeltaPayload(manifest, proposal.base, block, payload)
    if (!checked.ok) {
      return checked
    }
    out.push(checked.delta)
  }
  return { ok: true, deltas: out }
}

/**
 * sha-256 of each Delta block's canonical body, remembered by block id (a
 * body never changes). Bodies over their unit's bound, or payloads that do
 * not decompress, have none (null). Belongs to one validator (no module
 * state); bounded by `maxEntries`, oldest dropped first.
 */
export class DeltaBodyIndex {
  private readonly hashes: Map<Hex, string | null>
  private readonly maxEntries: number

  constructor (maxEntries = 4096) {
    this.hashes = new Map()
    this.maxEntries = maxEntries
  }

  remember (id: Hex, body: Uint8Array): string {
    const hash = sha256Hex(body)
    this.set(id, hash)
    return hash
  }

  /** The body hash of Delta block `id`; undefined when its payload is not stored here. */
  async hashOf (store: ChainStoreApi, manifest: ModelManifest, id: Hex): Promise<string | null | undefined> {
    const known = this.hashes.get(id)
    if (known !== undefined) {
      return known
    }
    const block = await store.get(Buffer.from(id, 'hex'))
    if (block?.header.type !== BlockType.Delta) {
      return undefined
    }
    const unitField = block.header.fields.get(DeltaField.UNIT)
    const unit = unitField?.kind === 'uint' ? manifest.units[Number(unitField.value)] : undefined
    if (unit == null || block.header.payloadSize > BigInt(maxUnitDeltaPayload(unit))) {
      this.set(id, null)
      return null
    }
    const payload = await readSmallPayload(store, block)
    if (payload == null) {
      return undefined
    }
    try {
      return this.remember(id, decompressDeltaPayload(payload, maxUnitDeltaBody(unit)))
    } catch (err) {
      if (!(err instanceof DeltaFormatError)) {
        throw err
      }
      this.set(id, null)
      return null
    }
  }

  private set (id: Hex, hash: string | null): void {
    this.hashes.delete(id)
    this.hashes.set(id, hash)
    while (this.hashes.size > this.maxEntries) {
      this.hashes.delete(this.hashes.keys().next().value as Hex)
    }
  }
}

/** Earlier in this store's (received, id) order: received first, ties by the smaller id. */
function receivedBefore (a: StoredBlock, b: StoredBlock): boolean {
  return a.receivedAt < b.receivedAt || (a.receivedAt === b.receivedAt && Buffer.compare(a.id, b.id) < 0)
}

/** The same payload bytes, by the headers alone (size, chunk size, chunk hashes): no payload needed. */
function samePayload (a: BlockHeader, b: BlockHeader): boolean {
  return a.payloadSize === b.payloadSize && a.chunkSize === b.chunkSize && a.chunkHashes.length === b.chunkHashes.length &&
    a.chunkHashes.every((h, i) => Buffer.compare(h, b.chunkHashes[i]) === 0)
}

/** Reasons a proposal is rejected without its deltas being judged: its author may propose them again on the live version. */
const UNJUDGED = new Set<string>([Reason.STALE, 'superseded', 'stale-governance'])

/**
 * Whether `other` (a proposal listing a delta with the same body as one of
 * `proposal`'s, by the same author) makes `proposal` a replay: it was
 * accepted, or rejected on the merits of its deltas, or is pending on the
 * same version. One rejected only because its base or governance state
 * moved on (stale, superseded, stale-governance), or pending on a past
 * version, does not: its author re-proposing the unchanged delta of a unit
 * on the new version (a rebase) is judged on its merits.
 */
function judgedOrLive (other: ProposalExplain, proposal: ProposalExplain): boolean {
  if (other.id === proposal.id) {
    return false
  }
  if (other.status === 'pending') {
    return other.base === proposal.base
  }
  return other.status === 'accepted' || !UNJUDGED.has(other.reason)
}

/** The stored blocks among `ids` of `type` naming model `modelHex`. */
async function blocksOf (store: ChainStoreApi, ids: readonly Uint8Array[], type: BlockType, modelHex: string): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for (const id of ids) {
    const block = await store.get(id)
    if (block?.header.type === type && bytesField(block, DeltaField.MODEL) === modelHex) {
      out.push(block)
    }
  }
  return out
}

/** The model's Delta blocks of `unit`: the children of the unit's Layer blocks (every Delta lists one). */
async function unitDeltaBlocks (store: ChainStoreApi, manifest: ModelManifest, unit: number): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for (const layer of await store.byModelUnit(manifest.id, unit)) {
    out.push(...await blocksOf(store, await store.children(layer.id), BlockType.Delta, manifest.idHex))
  }
  return out
}

/**
 * `duplicate` when `proposal` (its decoded `deltas`) repeats a delta this
 * node had before (see the file comment): one of its Delta blocks is also a
 * delta of a proposal received before it (a replay of the blocks), or one of
 * its deltas has the payload or the canonical body of another Delta block of
 * the same model and unit received before that delta, by another author or
 * listed by a proposal judged or pending on the same version (a copy
 * re-signed as one's own, or a replay in new blocks; not a rebase of a
 * stale proposal by its author). Reads headers by index (children of the delta and of the unit's
 * Layer blocks); bodies of other deltas from `index` or their stored
 * payloads (a delta whose payload is not here is compared by its header's
 * payload hashes only); the statuses of the proposals listing them from
 * `fold`.
 */
export async function checkDuplicate (store: ChainStoreApi, manifest: ModelManifest, fold: ModelFold, proposal: ProposalExplain, deltas: readonly LoadedDelta[], index: DeltaBodyIndex): Promise<CheckResult | undefined> {
  const self = await store.get(Buffer.from(proposal.id, 'hex'))
  if (self == null) {
    throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `no Proposal block ${proposal.id} in the store`)
  }
  for (const d of deltas) {
    const mine = await store.get(d.block.id)
    if (mine == null) {
      throw new LearningError(LearningErrorCode.PAYLOAD_MISSING, `no Delta block ${d.id} in the store`)
    }
    const hash = index.remember(d.id, d.body)
    for (const other of await blocksOf(store, await store.children(mine.id), BlockType.Proposal, manifest.idHex)) {
      const explained = fold.proposals.find(x => x.id === toHex(other.id))
      if (Buffer.compare(other.id, self.id) !== 0 && receivedBefore(other, self) && (explained == null || judgedOrLive(explained, proposal))) {
        return reject(Reason.DUPLICATE, `delta ${d.id.slice(0, 12)} (unit ${d.unit}) is also a delta of proposal ${toHex(other.id).slice(0, 12)}, received before this one`)
      }
    }
    for (const c of await unitDeltaBlocks(store, manifest, d.unit)) {
      if (Buffer.compare(c.id, mine.id) === 0 || !receivedBefore(c, mine)) {
        continue
      }
      const same = samePayload(c.header, mine.header) || await index.hashOf(store, manifest, toHex(c.id)) === hash
      if (!same) {
        continue
      }
      const byOther = Buffer.compare(c.header.author, mine.header.author) !== 0
      const listedBy = (await blocksOf(store, await store.children(c.id), BlockType.Proposal, manifest.idHex)).map(b => fold.proposals.find(x => x.id === toHex(b.id)))
      if (byOther || listedBy.some(x => x != null && judgedOrLive(x, proposal))) {
        return reject(Reason.DUPLICATE, `unit ${d.unit}: the same delta as delta ${toHex(c.id).slice(0, 12)}${byOther ? ` by ${toHex(c.header.author).slice(0, 12)}` : ''}, received before delta ${d.id.slice(0, 12)}`)
      }
    }
  }
  return undefined
}
