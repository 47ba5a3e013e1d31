/**
 * Splits the AEAD transport's byte stream into records ([length u32 LE]
 * [ciphertext][tag 16]) and opens each whole record (AeadOpener): the
 * plaintext goes out only after its tag verified. Fed like FrameDecoder:
 * `push(chunk)` for `data` events, or `readBuffer()` / `read()` for a socket
 * that reads into memory it is given (node's `onread`): while a record is
 * being assembled the socket writes straight into the unfilled rest of one
 * reused ciphertext buffer (the plaintext is a fresh buffer from the
 * decipher, so the ciphertext buffer is free again once a record is open);
 * between records it writes into a reused scratch buffer, and records lying
 * whole inside it are opened where they lie.
 */
import { AEAD_HEADER_BYTES, AEAD_TAG_BYTES } from './constants.ts'
import { DirectChannelError, DirectChannelErrorCode } from './errors.ts'
import type { AeadOpener } from './aead.ts'

const SCRATCH_BYTES = 64 * 1024

export class RecordDecoder {
  private readonly opener: AeadOpener
  private readonly maxRecordBytes: number
  private readonly header: Buffer
  private headerFilled: number
  /** ciphertext + tag of the record being assembled (a view of `store`), or undefined */
  private sealed?: Uint8Array
  private filled: number
  /** reused ciphertext memory, as large as the largest record so far */
  private store?: Uint8Array
  private scratch?: Uint8Array
  private target?: Uint8Array

  constructor (opener: AeadOpener, maxRecordBytes: number) {
    this.opener = opener
    this.maxRecordBytes = maxRecordBytes
    this.header = Buffer.alloc(AEAD_HEADER_BYTES)
    this.headerFilled = 0
    this.filled = 0
  }

  /** True between records (a clean place for the stream to end). */
  get idle (): boolean {
    return this.sealed == null && this.headerFilled === 0
  }

  /** Records opened so far. */
  get records (): number {
    return this.opener.counter
  }

  /** Feed one chunk; `emit` gets each authentic record's plaintext, in order. Throws AUTH_FAILED / RECORDS_EXHAUSTED. */
  push (chunk: Uint8Array, emit: (plaintext: Buffer) => void): void {
    this.decode(chunk, emit)
  }

  /** Where the next read should land: the unfilled rest of the record being assembled, else the scratch buffer. */
  readBuffer (): Uint8Array {
    if (this.sealed != null) {
      this.target = this.sealed.subarray(this.filled)
    } else {
      this.scratch ??= new Uint8Array(SCRATCH_BYTES)
      this.target = this.scratch
    }
    return this.target
  }

  /** `n` bytes were read into `buf` (the last readBuffer()). */
  read (buf: Uint8Array, n: number, emit: (plaintext: Buffer) => void): void {
    if (buf === this.target && this.sealed != null && buf.buffer === this.sealed.buffer) {
      this.filled += n
      if (this.filled === this.sealed.length) {
        this.finish(emit)
      }
      return
    }
    this.decode(buf.subarray(0, n), emit)
  }

  private finish (emit: (plaintext: Buffer) => void): void {
    const sealed = this.sealed as Uint8Array
    this.sealed = undefined
    this.filled = 0
    emit(this.opener.open(this.header, sealed))
  }

  private decode (chunk: Uint8Array, emit: (plaintext: Buffer) => void): void {
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.sealed != null) {
        const take = Math.min(this.sealed.length - this.filled, n - i)
        this.sealed.set(chunk.subarray(i, i + take), this.filled)
        this.filled += take
        i += take
        if (this.filled === this.sealed.length) {
          this.finish(emit)
        }
        continue
      }
      const take = Math.min(AEAD_HEADER_BYTES - this.headerFilled, n - i)
      this.header.set(chunk.subarray(i, i + take), this.headerFilled)
      this.headerFilled += take
      i += take
      if (this.headerFilled < AEAD_HEADER_BYTES) {
        continue
      }
      this.headerFilled = 0
      const len = this.header.readUInt32LE(0)
      if (len === 0 || len > this.maxRecordBytes) {
        throw new DirectChannelError(DirectChannelErrorCode.AUTH_FAILED, `direct channel record of ${len} bytes is outside 1..${this.maxRecordBytes}`)
      }
      const need = len + AEAD_TAG_BYTES
      if (n - i >= need) {
        // whole inside this chunk: opened where it lies (the decipher reads it now)
        const sealed = chunk.subarray(i, i + need)
        i += need
        emit(this.opener.open(this.header, sealed))
        continue
      }
      if (this.store == null || this.store.length < need) {
        this.store = new Uint8Array(Buffer.allocUnsafeSlow(need).buffer, 0, need)
      }
      this.sealed = this.store.subarray(0, need)
      this.filled = 0
    }
  }
}
