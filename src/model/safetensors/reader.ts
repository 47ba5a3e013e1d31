import { open } from 'node:fs/promises'
import { ModelError, ModelErrorCode } from '../errors.ts'
import { parseHeader, readHeaderLength } from './header.ts'
import type { RawTensor } from './dtypes.ts'
import type { SafetensorsHeader, TensorEntry } from './header.ts'
import type { FileHandle } from 'node:fs/promises'

/**
 * A safetensors file on disk read by offset: only the header is held in
 * memory, each tensor is read when asked for, so a 16 GB checkpoint never is.
 */
export class SafetensorsFile {
  readonly path: string
  readonly header: SafetensorsHeader
  readonly size: number
  private readonly handle: FileHandle
  private closed: boolean

  private constructor (path: string, handle: FileHandle, header: SafetensorsHeader, size: number) {
    this.path = path
    this.handle = handle
    this.header = header
    this.size = size
    this.closed = false
  }

  /** Opens `path` and validates its header; the handle stays open until close(). */
  static async open (path: string): Promise<SafetensorsFile> {
    const handle = await open(path, 'r')
    try {
      const { size } = await handle.stat()
      const prefix = new Uint8Array(Math.min(8, size))
      await readFully(handle, prefix, 0, path)
      const n = readHeaderLength(prefix, size, path)
      const json = new Uint8Array(n)
      await readFully(handle, json, 8, path)
      const header = parseHeader(json, size, path)
      return new SafetensorsFile(path, handle, header, size)
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  names (): string[] {
    return this.header.tensors.map(t => t.name)
  }

  entry (name: string): TensorEntry | undefined {
    return this.header.byName.get(name)
  }

  /** Reads one tensor's bytes; rejects with ERR_MISSING_TENSOR when absent. */
  async read (name: string): Promise<RawTensor> {
    if (this.closed) {
      throw new ModelError(ModelErrorCode.MISSING_TENSOR, 'file already closed', { file: this.path, tensor: name })
    }
    const entry = this.header.byName.get(name)
    if (entry == null) {
      throw new ModelError(ModelErrorCode.MISSING_TENSOR, 'no such tensor in file', { file: this.path, tensor: name })
    }
    const data = new Uint8Array(entry.length)
    await readFully(this.handle, data, entry.start, this.path)
    return { dtype: entry.dtype, shape: entry.shape.slice(), data }
  }

  async close (): Promise<void> {
    if (!this.closed) {
      this.closed = true
      await this.handle.close()
    }
  }
}

async function readFully (handle: FileHandle, into: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done)
    if (bytesRead === 0) {
      // the file shrank under us since the header was validated
      throw new ModelError(ModelErrorCode.OFFSETS_PAST_EOF, `unexpected end of file at byte ${position + done}`, { file })
    }
    done += bytesRead
  }
}

/** A safetensors payload already in memory (e.g. a layer block's payload). Views share its buffer. */
export interface DecodedSafetensors {
  metadata: Record<string, string>
  tensors: Map<string, RawTensor>
}

export function decodeSafetensors (bytes: Uint8Array, label?: string): DecodedSafetensors {
  const n = readHeaderLength(bytes, bytes.byteLength, label)
  const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength, label)
  const tensors = new Map<string, RawTensor>()
  for (const t of header.tensors) {
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape.slice(), data: bytes.subarray(t.start, t.start + t.length) })
  }
  return { metadata: header.metadata, tensors }
}
