/**
 * JSON forms of chain values for IPC and CLI output: ids and keys as
 * lowercase hex, 64-bit integers as decimal strings.
 */
import { BlockType, ChainId } from '../chain/types.ts'
import { toHex } from '../protocols/hex.ts'
import { InvalidParamsError } from './errors.ts'
import type { FieldValue, StoredBlock } from '../chain/types.ts'
import type { BlockJson } from '../protocols/ipc.ts'

/** the hex form of ids (protocols/hex.ts), for this part's importers */
export { toHex }

/** Parse a 32-byte block id given as 64 hex characters (any case). */
export function parseBlockId (value: unknown, what = 'block id'): Uint8Array {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{64}$/.test(value)) {
    throw new InvalidParamsError(`${what} must be 64 hex characters (got ${JSON.stringify(value) ?? String(value)})`)
  }
  return new Uint8Array(Buffer.from(value, 'hex'))
}

const TYPE_NAMES: Record<number, string> = {
  [BlockType.ModelManifest]: 'model-manifest',
  [BlockType.Note]: 'note',
  [BlockType.Dataset]: 'dataset',
  [BlockType.Proposal]: 'proposal',
  [BlockType.Attestation]: 'attestation',
  [BlockType.Motion]: 'motion',
  [BlockType.Vote]: 'vote',
  [BlockType.Params]: 'params',
  [BlockType.Receipt]: 'receipt',
  [BlockType.Transfer]: 'transfer',
  [BlockType.Layer]: 'layer',
  [BlockType.Delta]: 'delta'
}

export function blockTypeName (type: number): string {
  return TYPE_NAMES[type] ?? `unknown(${type})`
}

export function chainName (chain: number): 'A' | 'B' {
  return chain === ChainId.A ? 'A' : 'B'
}

function fieldToJson (field: FieldValue): { kind: string, value: string } {
  if (field.kind === 'bytes') {
    return { kind: 'bytes', value: toHex(field.value) }
  }
  return { kind: field.kind, value: String(field.value) }
}

export function blockToJson (block: StoredBlock): BlockJson {
  const h = block.header
  const fields: Record<string, { kind: string, value: string }> = {}
  for (const [key, value] of h.fields) {
    fields[key] = fieldToJson(value)
  }
  return {
    id: toHex(block.id),
    chain: chainName(h.chain),
    type: blockTypeName(h.type),
    version: h.version,
    parents: h.parents.map(toHex),
    author: toHex(h.author),
    timestamp: String(h.timestamp),
    fields,
    payloadSize: String(h.payloadSize),
    chunkSize: h.chunkSize,
    chunks: h.chunkHashes.length,
    payloadComplete: block.payloadComplete,
    receivedAt: block.receivedAt,
    signature: toHex(block.signature)
  }
}
