/**
 * Builders of learning blocks (Delta, Proposal, Attestation, Motion, Vote,
 * Params) with real keys, for the header-rule tests and the fold tests.
 */
import { expect } from 'aegir/chai'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { seedMessage } from '../../src/chain/validate-learning.ts'
import { bytesOf, expectCode, header, signHeader, withPayload } from './helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner, FieldValue } from '../../src/chain/types.ts'

export type Fields = Record<string, FieldValue | undefined>

export function uint (value: number | bigint): FieldValue {
  return { kind: 'uint', value: BigInt(value) }
}

export function bytes (value: Uint8Array): FieldValue {
  return { kind: 'bytes', value }
}

export function str (value: string): FieldValue {
  return { kind: 'string', value }
}

/** a field map from a record; undefined drops a field */
export function fieldMap (fields: Fields): Map<string, FieldValue> {
  return new Map(Object.entries(fields).filter((e): e is [string, FieldValue] => e[1] != null))
}

/** a header of `type` by `s` with `fields` (undefined drops one), `parents` and an optional payload (1 KiB chunks) */
export function learningHeader (s: BlockSigner, type: BlockType, fields: Fields, parents: Uint8Array[], payload?: Uint8Array, over: Partial<BlockHeader> = {}): BlockHeader {
  const h = header({
    author: s.publicKey,
    chain: type === BlockType.Delta ? ChainId.B : ChainId.A,
    type,
    parents,
    fields: fieldMap(fields),
    ...over
  })
  return payload != null && payload.length > 0 ? withPayload(h, payload, 1024) : h
}

/** signs `h` as `s` and adds it (with `payload`) to `store`; expects 'added' */
export async function add (store: ChainStore, h: BlockHeader, s: BlockSigner, payload?: Uint8Array): Promise<Uint8Array> {
  const { id, encoded } = await signHeader(h, s)
  expect(await store.addBlock(encoded, payload != null && payload.length > 0 ? payload : undefined)).to.equal('added')
  return id
}

/** the block is refused with `code` and a message matching `message`, counted, and nothing of it is stored */
export async function refused (store: ChainStore, h: BlockHeader, s: BlockSigner, code: string, message: RegExp, payload?: Uint8Array): Promise<void> {
  const { id, encoded } = await signHeader(h, s)
  const before = store.metrics().rejected[code] ?? 0
  const total = (await store.counts()).total
  const err = await expectCode(store.addBlock(encoded, payload != null && payload.length > 0 ? payload : undefined), code)
  expect(err.message).to.match(message)
  expect(store.metrics().rejected[code]).to.equal(before + 1)
  expect((await store.counts()).total).to.equal(total)
  expect(await store.has(id)).to.equal(false)
}

export async function addManifest (store: ChainStore, s: BlockSigner, nonce = 0n): Promise<Uint8Array> {
  return add(store, header({ author: s.publicKey, type: BlockType.ModelManifest, timestamp: 1_700_000_000_000n + nonce }), s)
}

export function layerHeader (s: BlockSigner, model: Uint8Array, unit: number): BlockHeader {
  return header({
    author: s.publicKey,
    chain: ChainId.B,
    type: BlockType.Layer,
    parents: [model],
    fields: fieldMap({ model: bytes(model), unit: uint(unit) })
  })
}

export async function addLayer (store: ChainStore, s: BlockSigner, model: Uint8Array, unit: number): Promise<Uint8Array> {
  return add(store, layerHeader(s, model, unit), s)
}

const TEXT = new TextEncoder().encode('a small corpus for the learning block tests\n')

export function textDatasetHeader (s: BlockSigner, name = 'corpus'): BlockHeader {
  return withPayload(header({
    author: s.publicKey,
    type: BlockType.Dataset,
    fields: fieldMap({
      name: str(name),
      format: str('text'),
      sequences: uint(1),
      tokens: uint(0),
      bytes: uint(TEXT.length),
      evalPermille: uint(100),
      splitTokens: uint(128)
    })
  }), TEXT, 1024)
}

export async function addTextDataset (store: ChainStore, s: BlockSigner, name = 'corpus'): Promise<Uint8Array> {
  return add(store, textDatasetHeader(s, name), s, TEXT)
}

export const DELTA_PAYLOAD = bytesOf(300, 9)

export function deltaFields (model: Uint8Array, unit: number, base: Uint8Array, over: Fields = {}): Fields {
  return { model: bytes(model), unit: uint(unit), base: bytes(base), codec: str('int8'), tensors: uint(2), ...over }
}

export function deltaHeader (s: BlockSigner, model: Uint8Array, layer: Uint8Array, unit: number, base: Uint8Array, over: Fields = {}, payload = DELTA_PAYLOAD): BlockHeader {
  return learningHeader(s, BlockType.Delta, deltaFields(model, unit, base, over), [model, layer], payload)
}

export function proposalFields (model: Uint8Array, base: Uint8Array, governance: Uint8Array, dataset: Uint8Array, over: Fields = {}): Fields {
  return { model: bytes(model), base: bytes(base), governance: bytes(governance), dataset: bytes(dataset), claimedBase: uint(2_500_000), claimedAfter: uint(2_400_000), ...over }
}

export async function seedSig (s: BlockSigner, proposal: Uint8Array): Promise<Uint8Array> {
  return s.sign(seedMessage(proposal))
}

export function attestationFields (model: Uint8Array, proposal: Uint8Array, sig: Uint8Array, verdict = 'accept', reason = verdict === 'accept' ? 'ok' : 'insufficient-gain', over: Fields = {}): Fields {
  return { model: bytes(model), proposal: bytes(proposal), verdict: str(verdict), reason: str(reason), seedSig: bytes(sig), ...over }
}
