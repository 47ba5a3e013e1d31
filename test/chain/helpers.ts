import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { blockId, createChainStore, createSignerFromSeed, encodeBlockHeader, encodeSignedBlockHeader, signingMessage } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import type { ChainStore, ChainStoreInit } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner } from '../../src/chain/types.ts'

export async function tempDir (name = 'bly-chain-'): Promise<string> {
  return mkdtemp(join(tmpdir(), name))
}

export async function removeDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

/** a started store in a fresh temp folder (fsync off: tests need not survive power cuts) */
export async function openStore (dir: string, init: Partial<ChainStoreInit> = {}): Promise<ChainStore> {
  const store = createChainStore({ path: dir, fsync: false, ...init })
  await store.start()
  return store
}

export function signer (n: number): BlockSigner {
  return createSignerFromSeed(new Uint8Array(32).fill(n))
}

export function sha256 (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

/** deterministic pseudo-random bytes */
export function bytesOf (length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed * 2654435761 >>> 0
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

export function chunkHashes (payload: Uint8Array, chunkSize: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let off = 0; off < payload.length; off += chunkSize) {
    out.push(sha256(payload.subarray(off, off + chunkSize)))
  }
  return out
}

/** a header with defaults, for hand-built blocks */
export function header (over: Partial<BlockHeader> & { author: Uint8Array }): BlockHeader {
  return {
    version: 1,
    chain: ChainId.A,
    type: BlockType.Note,
    parents: [],
    timestamp: 1_700_000_000_000n,
    fields: new Map(),
    payloadSize: 0n,
    chunkSize: 0,
    chunkHashes: [],
    ...over
  }
}

/** header + payload description -> header with payload size and chunk hashes filled in */
export function withPayload (h: BlockHeader, payload: Uint8Array, chunkSize: number): BlockHeader {
  return { ...h, payloadSize: BigInt(payload.length), chunkSize, chunkHashes: chunkHashes(payload, chunkSize) }
}

/** sign header bytes (canonical or not) as `s`; returns the envelope bytes and id */
export async function signBytes (headerBytes: Uint8Array, s: BlockSigner): Promise<{ id: Uint8Array, encoded: Uint8Array }> {
  const id = blockId(headerBytes)
  const signature = await s.sign(signingMessage(id))
  return { id, encoded: encodeSignedBlockHeader({ header: headerBytes, signature }) }
}

export async function signHeader (h: BlockHeader, s: BlockSigner): Promise<{ id: Uint8Array, encoded: Uint8Array }> {
  return signBytes(encodeBlockHeader(h), s)
}

export function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** an async iterable over `bytes` in pieces of `piece` bytes */
export async function * pieces (bytes: Uint8Array, piece: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += piece) {
    yield bytes.slice(off, off + piece)
  }
}

export async function collect (source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of source) {
    parts.push(p)
  }
  return Buffer.concat(parts)
}

export async function expectCode (p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await p
  } catch (err: any) {
    if (err?.code !== code) {
      throw new Error(`expected ${code}, got ${err?.code}: ${err?.message}`)
    }
    return err
  }
  throw new Error(`expected ${code}, but it resolved`)
}
