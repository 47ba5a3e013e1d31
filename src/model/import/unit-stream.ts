/**
 * Streams a unit's payload straight from the checkpoint files: the
 * safetensors header computed from the specs, then each tensor's byte range
 * read in pieces. Only one piece per call is in memory (the consumer may keep
 * pieces it was given: each is a fresh buffer).
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { ModelError, ModelErrorCode } from '../errors.ts'
import { IMPORT_READ_BYTES } from './constants.ts'
import type { ByteRange, UnitSource } from './checkpoint-source.ts'
import type { FileHandle } from 'node:fs/promises'

export interface UnitStreamOptions {
  signal?: AbortSignal
  /** called with the size of each piece as it is yielded */
  onBytes?(n: number): void
  readBytes?: number
}

export async function * unitPayload (unit: UnitSource, options: UnitStreamOptions = {}): AsyncGenerator<Uint8Array> {
  const pieceSize = options.readBytes ?? IMPORT_READ_BYTES
  options.signal?.throwIfAborted()
  options.onBytes?.(unit.header.byteLength)
  yield unit.header
  const handles = new Map<string, FileHandle>()
  const plan = pieces(unit, pieceSize)
  const readNext = async (): Promise<Uint8Array | undefined> => {
    const step = plan.next()
    if (step.done === true) {
      return undefined
    }
    const { range, position, length } = step.value
    let handle = handles.get(range.path)
    if (handle == null) {
      handle = await open(range.path, 'r')
      handles.set(range.path, handle)
    }
    const piece = new Uint8Array(length)
    await readFully(handle, piece, position, range)
    return piece
  }
  let next = readNext()
  try {
    for (let piece = await next; piece != null; piece = await next) {
      // read the following piece (libuv pool) while the consumer hashes and stores this one
      next = readNext()
      next.catch(() => {})
      options.signal?.throwIfAborted()
      options.onBytes?.(piece.byteLength)
      yield piece
    }
  } finally {
    await next.catch(() => {})
    await Promise.all([...handles.values()].map(async h => { await h.close() }))
  }
}

/** the unit's tensor bytes as reads of at most `size` bytes, in payload order */
function * pieces (unit: UnitSource, size: number): Generator<{ range: ByteRange, position: number, length: number }> {
  for (const range of unit.ranges) {
    for (let done = 0; done < range.length; done += size) {
      yield { range, position: range.start + done, length: Math.min(size, range.length - done) }
    }
  }
}

async function readFully (handle: FileHandle, into: Uint8Array, position: number, range: ByteRange): Promise<void> {
  for (let filled = 0; filled < into.byteLength;) {
    const { bytesRead } = await handle.read(into, filled, into.byteLength - filled, position + filled)
    if (bytesRead === 0) {
      throw new ModelError(ModelErrorCode.CHECKPOINT_CHANGED, `file ended at byte ${position + filled} while reading; it changed since it was validated`, { file: range.path, tensor: range.tensor })
    }
    filled += bytesRead
  }
}

/** sha-256 (hex) of a unit's payload, read from the checkpoint. */
export async function hashUnit (unit: UnitSource, options: UnitStreamOptions = {}): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of unitPayload(unit, options)) {
    hash.update(piece)
  }
  return hash.digest('hex')
}

/**
 * unitPayload() that checks the bytes still hash to `sha256` before it yields
 * the last piece, so a checkpoint that changed since it was hashed fails the
 * block before the store commits it.
 */
export async function * verifiedUnitPayload (unit: UnitSource, sha256: string, options: UnitStreamOptions = {}): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256')
  let seen = 0
  for await (const piece of unitPayload(unit, options)) {
    hash.update(piece)
    seen += piece.byteLength
    if (seen === unit.bytes) {
      const got = hash.digest('hex')
      if (got !== sha256) {
        throw new ModelError(ModelErrorCode.CHECKPOINT_CHANGED, `unit ${unit.plan.unit} hashed to ${sha256} when validated and to ${got} now; the checkpoint changed during import`, { file: unit.ranges[0]?.path })
      }
    }
    yield piece
  }
  if (seen !== unit.bytes) {
    throw new ModelError(ModelErrorCode.CHECKPOINT_CHANGED, `unit ${unit.plan.unit} streamed ${seen} bytes, expected ${unit.bytes}`, { file: unit.ranges[0]?.path })
  }
}
