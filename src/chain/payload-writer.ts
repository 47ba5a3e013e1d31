/**
 * Turns a payload (whole or streamed) into durable content-addressed chunk
 * files. A streamed payload is never assembled in memory: each piece is
 * hashed (main thread) and written at its offset into the chunk's temp file
 * (libuv pool) as it arrives, so hashing and writing overlap and large pieces
 * are never copied. When a chunk is full its hash names the file (fsync,
 * rename); a bounded number of chunks are in flight, so memory stays at about
 * (concurrency + 1) x chunkSize whatever the payload size.
 */
import { createHash } from 'node:crypto'
import { ChainError, ChainErrorCode } from './errors.ts'
import { toHex } from './validate.ts'
import type { ChunkFiles, TempChunk } from './chunk-files.ts'
import type { Hash } from 'node:crypto'

/** pieces smaller than this are copied into a staging buffer to avoid tiny writes */
const DIRECT_WRITE_MIN = 64 * 1024
const STAGING_SIZE = 1024 * 1024

export interface ChunkWriterInit {
  files: ChunkFiles
  concurrency: number
  /** true when a chunk with this hash is already durable (its write is skipped) */
  exists(hash: Uint8Array): Promise<boolean>
}

/** One chunk being streamed into its temp file. */
class OpenChunk {
  readonly hash: Hash
  readonly tmp: Promise<TempChunk>
  readonly writes: Array<Promise<void>>
  private readonly files: ChunkFiles
  fill: number
  private staging?: Uint8Array
  private stagingStart: number
  private stagingFill: number

  constructor (files: ChunkFiles) {
    this.files = files
    this.hash = createHash('sha256')
    this.tmp = files.openTemp()
    this.tmp.catch(() => {})
    this.writes = []
    this.fill = 0
    this.stagingStart = 0
    this.stagingFill = 0
  }

  append (part: Uint8Array): void {
    this.hash.update(part)
    if (part.length >= DIRECT_WRITE_MIN) {
      this.flush()
      this.schedule(part, this.fill)
    } else {
      if (this.staging != null && this.stagingFill + part.length > this.staging.length) {
        this.flush()
      }
      if (this.staging == null) {
        this.staging = new Uint8Array(STAGING_SIZE)
        this.stagingStart = this.fill
        this.stagingFill = 0
      }
      this.staging.set(part, this.stagingFill)
      this.stagingFill += part.length
    }
    this.fill += part.length
  }

  flush (): void {
    if (this.staging != null && this.stagingFill > 0) {
      this.schedule(this.staging.subarray(0, this.stagingFill), this.stagingStart)
    }
    this.staging = undefined
  }

  private schedule (bytes: Uint8Array, position: number): void {
    const p = this.tmp.then(async tmp => this.files.writeTemp(tmp, bytes, position))
    p.catch(() => {})
    this.writes.push(p)
  }

  /** wait for every write of this chunk; returns the temp file */
  async settled (): Promise<TempChunk> {
    const tmp = await this.tmp
    await Promise.all(this.writes)
    return tmp
  }
}

/** Writes chunks with bounded concurrency; `finish()` waits for all and fsyncs the folders. */
export class ChunkWriter {
  private readonly init: ChunkWriterInit
  private readonly inflight: Set<Promise<void>>
  private readonly dirs: Set<string>
  private readonly seen: Set<string>
  private readonly open: Set<OpenChunk>
  private error?: Error
  /** hex hashes of every chunk added (written or already present) */
  readonly hexes: string[]
  /** chunks actually written by this writer */
  written: number

  constructor (init: ChunkWriterInit) {
    this.init = init
    this.inflight = new Set()
    this.dirs = new Set()
    this.seen = new Set()
    this.open = new Set()
    this.hexes = []
    this.written = 0
  }

  /** schedule a durable write of a whole chunk; resolves once there is room for another */
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
    await this.track(this.init.files.write(hash, bytes).then(dir => {
      this.dirs.add(dir)
      this.written++
    }))
  }

  /** start streaming a chunk of unknown hash */
  openChunk (): OpenChunk {
    this.throwIfFailed()
    const chunk = new OpenChunk(this.init.files)
    this.open.add(chunk)
    return chunk
  }

  /** the chunk is complete: name it by its hash and make it durable in the background */
  async closeChunk (chunk: OpenChunk): Promise<Uint8Array> {
    chunk.flush()
    const digest = chunk.hash.digest()
    const hash = new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength)
    const hex = toHex(hash)
    this.hexes.push(hex)
    const duplicate = this.seen.has(hex)
    this.seen.add(hex)
    this.open.delete(chunk)
    await this.track((async () => {
      const tmp = await chunk.settled().catch(async err => {
        await chunk.tmp.then(async t => this.init.files.discardTemp(t), () => {})
        throw err
      })
      if (duplicate || await this.init.exists(hash)) {
        await this.init.files.discardTemp(tmp)
        return
      }
      this.dirs.add(await this.init.files.commitTemp(tmp, hash))
      this.written++
    })())
    return hash
  }

  /** wait for every write, then make the renames durable */
  async finish (): Promise<void> {
    await Promise.all(this.inflight)
    this.throwIfFailed()
    await this.init.files.syncDirs(this.dirs)
  }

  /** error path: wait for writes in flight and drop chunks still open, without throwing */
  async settle (): Promise<void> {
    await Promise.allSettled(this.inflight)
    for (const chunk of this.open) {
      await chunk.settled().then(async tmp => this.init.files.discardTemp(tmp), () => {})
    }
    this.open.clear()
  }

  private async track (work: Promise<void>): Promise<void> {
    const p: Promise<void> = work.then(() => {}, err => {
      this.error ??= err instanceof Error ? err : new Error(String(err))
    }).finally(() => {
      this.inflight.delete(p)
    })
    this.inflight.add(p)
    while (this.inflight.size >= this.init.concurrency) {
      await Promise.race(this.inflight)
    }
    this.throwIfFailed()
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
 * Cut `source` into `chunkSize` chunks as it streams, hashing and writing
 * each piece as it arrives. Pieces are written without copying, so the
 * source must not reuse a buffer after yielding it (Node streams do not).
 */
export async function chunkPayload (source: Uint8Array | AsyncIterable<Uint8Array>, chunkSize: number, maxPayloadSize: bigint, writer: ChunkWriter, signal?: AbortSignal): Promise<ChunkedPayload> {
  const chunkHashes: Uint8Array[] = []
  let size = 0n
  const pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = source instanceof Uint8Array ? [source] : source
  let chunk: OpenChunk | undefined
  for await (const piece of pieces) {
    signal?.throwIfAborted()
    if (!(piece instanceof Uint8Array)) {
      throw new ChainError(ChainErrorCode.INVALID_ARGUMENT, 'payload stream yielded something other than a Uint8Array')
    }
    size += BigInt(piece.length)
    if (size > maxPayloadSize) {
      throw new ChainError(ChainErrorCode.PAYLOAD_TOO_LARGE, `payload exceeds the limit of ${maxPayloadSize} bytes`)
    }
    let off = 0
    while (off < piece.length) {
      chunk ??= writer.openChunk()
      const n = Math.min(chunkSize - chunk.fill, piece.length - off)
      chunk.append(piece.subarray(off, off + n))
      off += n
      if (chunk.fill === chunkSize) {
        chunkHashes.push(await writer.closeChunk(chunk))
        chunk = undefined
      }
    }
  }
  if (chunk != null && chunk.fill > 0) {
    chunkHashes.push(await writer.closeChunk(chunk))
  }
  return { size, chunkHashes }
}
