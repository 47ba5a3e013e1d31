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
  try {
    for (const range of unit.ranges) {
      let handle = handles.get(range.path)
      if (handle == null) {
        handle = await open(range.path, 'r')
        handles.set(range.path, handle)
      }
      for (let done = 0; done < range.length;) {
        options.signal?.throwIfAborted()
        const piece = new Uint8Array(Math.min(pieceSize, range.length - done))
        await readFully(handle, piece, range.start + done, range)
        done += piece.byteLength
        options.onBytes?.(piece.byteLength)
        yield piece
      }
    }
  } finally {
    await Promise.all([...handles.values()].map(async h => { await h.close() }))
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
