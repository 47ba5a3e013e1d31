// LevelDB key layout of the chain store (all keys and values are bytes).
//
//   h id                     -> record: flags(1) receivedAt(u64) height(u32) signedHeader
//   o height id              -> chain(1)           topological order (height, id)
//   y type height id         -> ''                 by type, in topological order
//   u model unit(u32) id     -> ''                 layer blocks by (manifest id, unit)
//   k parent child           -> ''                 children
//   p chain id               -> ''                 tips per chain
//   c chunkHash              -> size(u32)          chunk file present and durable
//   n chain                  -> count(u64)         blocks per chain
//
// A block is visible iff its `h` key exists; every other key of a block is
// written in the same atomic batch.

export const Prefix = {
  Header: 0x68, // h
  Order: 0x6f, // o
  Type: 0x79, // y
  ModelUnit: 0x75, // u
  Child: 0x6b, // k
  Tip: 0x70, // p
  Chunk: 0x63, // c
  Count: 0x6e // n
} as const

export const FLAG_PAYLOAD_COMPLETE = 1
const RECORD_META = 13

function key (prefix: number, ...parts: Uint8Array[]): Uint8Array {
  let len = 1
  for (const p of parts) {
    len += p.length
  }
  const out = new Uint8Array(len)
  out[0] = prefix
  let pos = 1
  for (const p of parts) {
    out.set(p, pos)
    pos += p.length
  }
  return out
}

export function u8 (n: number): Uint8Array {
  return Uint8Array.of(n)
}

export function u32 (n: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, n)
  return out
}

export function readU32 (bytes: Uint8Array, offset = 0): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset)
}

export function u64 (n: bigint): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, n)
  return out
}

export function readU64 (bytes: Uint8Array, offset = 0): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset)
}

export const headerKey = (id: Uint8Array): Uint8Array => key(Prefix.Header, id)
export const orderKey = (height: number, id: Uint8Array): Uint8Array => key(Prefix.Order, u32(height), id)
export const typeKey = (type: number, height: number, id: Uint8Array): Uint8Array => key(Prefix.Type, u8(type), u32(height), id)
export const modelUnitKey = (model: Uint8Array, unit: number, id: Uint8Array): Uint8Array => key(Prefix.ModelUnit, model, u32(unit), id)
export const childKey = (parent: Uint8Array, child: Uint8Array): Uint8Array => key(Prefix.Child, parent, child)
export const tipKey = (chain: number, id: Uint8Array): Uint8Array => key(Prefix.Tip, u8(chain), id)
export const chunkKey = (hash: Uint8Array): Uint8Array => key(Prefix.Chunk, hash)
export const countKey = (chain: number): Uint8Array => key(Prefix.Count, u8(chain))

/** [gte, lt) bounds of every key starting with prefix byte + parts */
export function range (prefix: number, ...parts: Uint8Array[]): { gte: Uint8Array, lt: Uint8Array } {
  const gte = key(prefix, ...parts)
  // lt = the shortest key greater than every key with this prefix; the
  // prefix byte is never 0xff so the loop always stops
  let i = gte.length - 1
  while (gte[i] === 0xff) {
    i--
  }
  const lt = gte.slice(0, i + 1)
  lt[i]++
  return { gte, lt }
}

export interface HeaderRecord {
  flags: number
  receivedAt: number
  height: number
  signedHeader: Uint8Array
}

export function encodeRecord (r: HeaderRecord): Uint8Array {
  const out = new Uint8Array(RECORD_META + r.signedHeader.length)
  const dv = new DataView(out.buffer)
  out[0] = r.flags
  dv.setBigUint64(1, BigInt(r.receivedAt))
  dv.setUint32(9, r.height)
  out.set(r.signedHeader, RECORD_META)
  return out
}

export function decodeRecord (bytes: Uint8Array): HeaderRecord {
  if (bytes.length < RECORD_META) {
    throw new Error('header record too short')
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return {
    flags: bytes[0],
    receivedAt: Number(dv.getBigUint64(1)),
    height: dv.getUint32(9),
    signedHeader: bytes.subarray(RECORD_META)
  }
}
