/**
 * Turns a payload (whole or streamed) into durable content-addressed chunk
 * files. Hashing runs on the main thread while earlier chunks are written by
 * the libuv pool, with a bounded number of writes in flight, so memory stays
 * at about (concurrency + 1) x chunkSize whatever the payload size.
 */
import { createHash } from 'node:crypto'
import { ChainError, ChainErrorCode } from './errors.ts'
import { toHex } from './validate.ts'
import type { ChunkFiles } from './chunk-files.ts'

export interface ChunkWriterInit {
  files: ChunkFiles
  concurrency: number
  /** true when a chunk with this hash is already durable (its write is skipped) */
  exists(hash: Uint8Array): Promise<boolean>
}

/** Writes chunks with bounded concurrency; `finish()` waits for all and fsyncs the folders. */
export class ChunkWriter {
  private readonly init: ChunkWriterInit
  private readonly inflight: Set<Promise<void>>
  private readonly dirs: Set<string>
  private readonly seen: Set<string>
  private error: unknown
  /** hex hashes of every chunk added (written or already present) */
  readonly hexes: string[]
  /** chunks actually written by this writer */
  written: number

  constructor (init: ChunkWriterInit) {
    this.init = init
    this.inflight = new Set()
    this.dirs = new Set()
    this.seen = new Set()
    this.hexes = []
    this.written = 0
  }

  /** schedule a write of `bytes` under `hash`; resolves once there is room for another */
  async add (hash: Uint8Array, bytes: Uint8Array): Promise<void> {
    this.throwIfFailed()
    const hex = toHex(hash)
    this.hexes.push(hex)
    if (this.seen.has(hex)) {
      return
    }
    this.seen.add(hex)
    if (await this.init.exists(hash)) {
      return
    }
    const p: Promise<void> = this.init.files.write(hash, bytes).then(dir => {
      this.dirs.add(dir)
      this.written++
    }, err => {
      this.error ??= err
    }).finally(() => {
      this.inflight.delete(p)
    })
    this.inflight.add(p)
    while (this.inflight.size >= this.init.concurrency) {
      await Promise.race(this.inflight)
    }
    this.throwIfFailed()
  }

  /** wait for every write, then make the renames durable */
  async finish (): Promise<void> {
    await Promise.all(this.inflight)
    this.throwIfFailed()
    await this.init.files.syncDirs(this.dirs)
  }

  /** wait for writes in flight without throwing (used on the error path) */
  async settle (): Promise<void> {
    await Promise.allSettled(this.inflight)
  }

  private throwIfFailed (): void {
    if (this.error != null) {
      throw this.error
    }
  }
}

export interface ChunkedPayload {
  size: bigint
  chunkHashes: Uint8Array[]
}

/**
 * Cut `source` into `chunkSize` chunks, hash each and hand it to `writer`.
 * Aligned input pieces are used without copying (the source must not reuse
 * a buffer after yielding it, as Node streams do not).
 */
export async function chunkPayload (source: Uint8Array | AsyncIterable<Uint8Array>, chunkSize: number, maxPayloadSize: bigint, writer: ChunkWriter, signal?: AbortSignal): Promise<ChunkedPayload> {
  const chunkHashes: Uint8Array[] = []
  let size = 0n
  const emit = async (chunk: Uint8Array): Promise<void> => {
    size += BigInt(chunk.length)
    if (size > maxPayloadSize) {
      throw new ChainError(ChainErrorCode.PayloadTooLarge, `payload exceeds the limit of ${maxPayloadSize} bytes`)
    }
    const hash = createHash('sha256').update(chunk).digest()
    chunkHashes.push(hash)
    await writer.add(hash, chunk)
  }
  const pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = source instanceof Uint8Array ? [source] : source
  let cur: Uint8Array | undefined
  let fill = 0
  for await (const piece of pieces) {
    signal?.throwIfAborted()
    if (!(piece instanceof Uint8Array)) {
      throw new ChainError(ChainErrorCode.InvalidArgument, 'payload stream yielded something other than a Uint8Array')
    }
    let off = 0
    while (off < piece.length) {
      if (fill === 0 && piece.length - off >= chunkSize) {
        await emit(piece.subarray(off, off + chunkSize))
        off += chunkSize
        continue
      }
      cur ??= new Uint8Array(chunkSize)
      const n = Math.min(chunkSize - fill, piece.length - off)
      cur.set(piece.subarray(off, off + n), fill)
      fill += n
      off += n
      if (fill === chunkSize) {
        await emit(cur)
        cur = undefined
        fill = 0
      }
    }
  }
  if (fill > 0 && cur != null) {
    await emit(cur.subarray(0, fill))
  }
  return { size, chunkHashes }
}
