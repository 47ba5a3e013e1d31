/**
 * The ledger fold (protocols/ledger.md): the balances of one model's BLY
 * as a deterministic function of the blocks a node holds. It reads the
 * learning fold (genesis, governance states and their params, each
 * proposal's status and counted attestations, the version history), the
 * model's Receipt and Transfer blocks, and the depth of every block that
 * moves BLY; sorts the events by (depth, block id) and applies them to a
 * LedgerState, checking the invariants after each block position.
 *
 * Ordering and durability: reads the store, writes nothing; recomputed
 * from scratch on each call. What a LedgerCache keeps between calls is
 * immutable per block id (depths; which receipts of a block carry valid
 * signatures), so a cache never changes a result. A Receipt block whose
 * payload is not stored yet is reported (`payload-missing`) and judges
 * nothing, so its receipts are neither paid nor spent until it arrives.
 */
import { BlockType } from '../../chain/types.ts'
import { ManifestField } from '../../model/import/constants.ts'
import { fromHex, toHex } from '../../protocols/hex.ts'
import { ReceiptCodecError, ReceiptField, decodeReceiptBatch } from '../../protocols/receipt.ts'
import { TransferField } from '../../protocols/transfer.ts'
import { readModelRecords, readSmallPayload } from '../fold/blocks.ts'
import { foldRecords } from '../fold/fold.ts'
import { lowerMedian, meanGainMicroNats } from './gain.ts'
import { batchRoot } from './new-blocks.ts'
import { DepthIndex, comparePositions, laterPosition } from './order.ts'
import { SignatureVerifier } from './receipt-signing.ts'
import { LedgerState } from './state.ts'
import type { Hex, LedgerResult, Position, ProposalEvent, ReceiptBatchInput, ReceiptContext, ReceiptItem } from './types.ts'
import type { ChainStoreApi, StoredBlock } from '../../chain/types.ts'
import type { EvalWindowsProvider, ModelFold, ModelRecords } from '../fold/types.ts'

/** What a fold may keep for the next one (per daemon, never per module). */
export class LedgerCache {
  /** block id -> depth */
  readonly depths = new Map<string, number>()
  /** Receipt block id -> per receipt in batch order: bit 0 the client's signature verifies, bit 1 the stage's */
  readonly signatures = new Map<string, Uint8Array>()
  readonly verifier = new SignatureVerifier()
}

export interface LedgerFoldOptions {
  /** the eval windows the learning fold needs to judge attestations */
  evalWindows: EvalWindowsProvider
  /** kept between folds; a fresh one (every signature verified again) when not given */
  cache?: LedgerCache
}

export interface LedgerFold {
  ledger: LedgerResult
  learning: ModelFold
}

function bytesField (block: StoredBlock, key: string): Uint8Array | undefined {
  const f = block.header.fields.get(key)
  return f?.kind === 'bytes' ? f.value : undefined
}

function uintField (block: StoredBlock, key: string): bigint | undefined {
  const f = block.header.fields.get(key)
  return f?.kind === 'uint' ? f.value : undefined
}

/** The model's blocks of `type` (the `model` field names it). */
async function blocksOf (store: ChainStoreApi, type: BlockType, modelHex: Hex): Promise<StoredBlock[]> {
  const out: StoredBlock[] = []
  for await (const block of store.byType(type)) {
    const model = bytesField(block, 'model')
    if (model != null && toHex(model) === modelHex) {
      out.push(block)
    }
  }
  return out
}

/** The four signature outcomes, shared by every receipt (a million receipts hold no million objects). */
const SIGNATURES = [
  Object.freeze({ client: false, stage: false }),
  Object.freeze({ client: true, stage: false }),
  Object.freeze({ client: false, stage: true }),
  Object.freeze({ client: true, stage: true })
] as const

/** One string per distinct key or id of a fold (entries keep references, not copies). */
type Intern = (bytes: Uint8Array) => Hex

function interner (): Intern {
  const seen = new Map<string, Hex>()
  return (bytes) => {
    const hex = toHex(bytes)
    const known = seen.get(hex)
    if (known != null) {
      return known
    }
    seen.set(hex, hex)
    return hex
  }
}

/** The receipts of a Receipt block, decoded, root-checked and signature-checked (through the cache). */
async function readBatch (store: ChainStoreApi, block: StoredBlock, cache: LedgerCache, intern: Intern): Promise<ReceiptBatchInput> {
  const payload = await readSmallPayload(store, block)
  if (payload == null) {
    return { status: 'payload-missing' }
  }
  let decoded
  try {
    decoded = decodeReceiptBatch(payload)
  } catch (err) {
    if (err instanceof ReceiptCodecError) {
      return { status: 'malformed', error: `${err.code}: ${err.message}` }
    }
    throw err
  }
  const count = uintField(block, ReceiptField.RECEIPTS)
  if (count !== BigInt(decoded.length)) {
    return { status: 'malformed', error: `the header names ${String(count)} receipts, the batch holds ${decoded.length}` }
  }
  const root = bytesField(block, ReceiptField.ROOT)
  if (root == null || toHex(batchRoot(payload, decoded.length)) !== toHex(root)) {
    return { status: 'root', error: 'the batch\'s Merkle root is not the header\'s root' }
  }
  const idHex = toHex(block.id)
  let flags = cache.signatures.get(idHex)
  if (flags?.length !== decoded.length) {
    flags = new Uint8Array(decoded.length)
    decoded.forEach((d, i) => {
      const ok = cache.verifier.verifyReceipt(d.receipt, d.body)
      ;(flags as Uint8Array)[i] = (ok.client ? 1 : 0) | (ok.stage ? 2 : 0)
    })
    cache.signatures.set(idHex, flags)
  }
  const receipts: ReceiptItem[] = decoded.map((d, i) => ({
    id: toHex(d.id),
    model: intern(d.receipt.model),
    version: intern(d.receipt.version),
    governance: intern(d.receipt.governance),
    client: intern(d.receipt.client),
    stage: intern(d.receipt.stage),
    nonce: d.receipt.nonce,
    layerStart: d.receipt.layerStart,
    layerEnd: d.receipt.layerEnd,
    positions: d.receipt.positions,
    tokens: d.receipt.tokens,
    signatures: SIGNATURES[(flags as Uint8Array)[i] & 3]
  }))
  return { status: 'ok', receipts }
}

/** The decoder layers a manifest declares (`units` - 2: embedding and head are units too), or null. */
function decoderLayers (manifest: StoredBlock | undefined): number | null {
  const units = manifest != null ? uintField(manifest, ManifestField.UNITS) : undefined
  return units != null && units >= 2n ? Number(units - 2n) : null
}

/** The proposals whose status moves BLY, with the position of their last deciding block. */
async function proposalEvents (learning: ModelFold, records: ModelRecords, depths: DepthIndex): Promise<Array<{ at: Position, event: ProposalEvent }>> {
  const measurements = new Map(records.attestations.map(a => [a.idHex, a.measurements]))
  const params = new Map(learning.governance.history.map(g => [g.id, g.params]))
  const out: Array<{ at: Position, event: ProposalEvent }> = []
  for (const p of learning.proposals) {
    const gov = params.get(p.governance)
    if ((p.status !== 'accepted' && p.status !== 'rejected') || gov == null) {
      continue
    }
    const counted = p.attestations.filter(a => a.counted).sort((a, b) => a.validator < b.validator ? -1 : 1)
    const accepters = counted.filter(a => a.effectiveVerdict === 'accept')
    const rejecters = counted.filter(a => a.effectiveVerdict === 'reject')
    let at = await depths.position(fromHex(p.id))
    for (const a of counted) {
      at = laterPosition(at, await depths.position(fromHex(a.id)))
    }
    const gains = accepters.map(a => {
      const m = measurements.get(a.id)?.[0]
      return m != null ? meanGainMicroNats(m) : 0n
    })
    out.push({
      at,
      event: {
        proposal: p.id,
        proposer: p.author,
        status: p.status,
        reason: p.reason,
        gainMicroNats: lowerMedian(gains),
        rewardPerMicroNat: BigInt(gov.rewardPerMicroNat),
        validatorReward: BigInt(gov.validatorReward),
        accepters: accepters.map(a => ({ key: a.validator, attestation: a.id })),
        rejecters: rejecters.map(a => ({ key: a.validator, attestation: a.id })),
        blocks: [p.id, ...counted.map(a => a.id)]
      }
    })
  }
  return out
}

interface Step {
  at: Position
  run(state: LedgerState): Promise<void> | void
}

/**
 * The ledger of model `modelId` in `store`, and the learning fold it was
 * computed from. Throws FoldError ERR_FOLD_MODEL_NOT_FOUND when the id is
 * no stored ModelManifest.
 */
export async function foldLedger (store: ChainStoreApi, modelId: Uint8Array, options: LedgerFoldOptions): Promise<LedgerFold> {
  const cache = options.cache ?? new LedgerCache()
  const records = await readModelRecords(store, modelId)
  const learning = await foldRecords(records, { evalWindows: options.evalWindows })
  const modelHex = records.modelHex
  const depths = new DepthIndex(store, cache.depths)
  const ctx: ReceiptContext = {
    model: modelHex,
    versions: new Set(learning.versions.map(v => v.id)),
    prices: new Map(learning.governance.history.filter(g => g.params != null).map(g => [g.id, BigInt(g.params?.priceLayerPosition ?? 0)])),
    decoderLayers: decoderLayers(await store.get(modelId))
  }
  const steps: Step[] = []
  const intern = interner()
  const genesis = learning.genesis
  if (genesis.status === 'ok') {
    const at = await depths.position(fromHex(genesis.block))
    const amount = BigInt(genesis.params.genesisAllocation)
    steps.push({ at, run: state => { state.genesis(genesis.block, at, learning.author, amount) } })
  }
  for (const block of await blocksOf(store, BlockType.Receipt, modelHex)) {
    const at = await depths.position(block.id)
    const stage = toHex(block.header.author)
    steps.push({ at, run: async state => { state.receipts(at.block, at, stage, await readBatch(store, block, cache, intern), ctx) } })
  }
  for (const block of await blocksOf(store, BlockType.Transfer, modelHex)) {
    const at = await depths.position(block.id)
    const to = toHex(bytesField(block, TransferField.TO) ?? new Uint8Array(32))
    const amount = uintField(block, TransferField.AMOUNT) ?? 0n
    const nonce = uintField(block, TransferField.NONCE) ?? 0n
    const from = toHex(block.header.author)
    steps.push({ at, run: state => { state.transfer(at.block, at, from, to, amount, nonce) } })
  }
  for (const { at, event } of await proposalEvents(learning, records, depths)) {
    steps.push({ at, run: state => { state.proposal(at, event) } })
  }
  steps.sort((a, b) => comparePositions(a.at, b.at))
  const state = new LedgerState(modelHex)
  for (const step of steps) {
    await step.run(state)
    state.endBlock(step.at)
  }
  return { ledger: state.result(), learning }
}
