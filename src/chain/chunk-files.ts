/**
 * Content-addressed chunk files: `dir/ab/<sha256 hex>`, written to a temp
 * file under `dir/tmp`, fsynced, then renamed into place. Idempotent since a
 * name is the hash of the content; a reader always verifies the hash anyway.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { toHex } from './validate.ts'
import type { FileHandle } from 'node:fs/promises'

const HEX_NAME = /^[0-9a-f]{64}$/

export interface TempChunk {
  path: string
  fh: FileHandle
}

export interface ChunkFilesInit {
  dir: string
  fsync: boolean
}

export class ChunkFiles {
  readonly dir: string
  private readonly fsync: boolean
  private readonly tmpDir: string
  private readonly madeDirs: Set<string>
  private tmpCounter: number

  constructor (init: ChunkFilesInit) {
    this.dir = init.dir
    this.fsync = init.fsync
    this.tmpDir = join(init.dir, 'tmp')
    this.madeDirs = new Set()
    this.tmpCounter = 0
  }

  /** create the folders and drop temp files a crash left behind */
  async start (): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true })
    await mkdir(this.tmpDir, { recursive: true })
  }

  pathOf (hash: Uint8Array): string {
    const hex = toHex(hash)
    return join(this.dir, hex.slice(0, 2), hex)
  }

  /** a new temp file to stream one chunk into; finish with commitTemp or discardTemp */
  async openTemp (): Promise<TempChunk> {
    const path = join(this.tmpDir, `${process.pid}.${this.tmpCounter++}`)
    return { path, fh: await open(path, 'w') }
  }

  /** write `bytes` at `position` of a temp chunk, in as few calls as the OS allows */
  async writeTemp (tmp: TempChunk, bytes: Uint8Array, position: number): Promise<void> {
    let off = 0
    while (off < bytes.length) {
      const { bytesWritten } = await tmp.fh.write(bytes, off, bytes.length - off, position + off)
      off += bytesWritten
    }
  }

  /**
   * make a temp chunk durable under `hash` (fsync, close, rename); returns the
   * folder it went into so the caller can fsync each touched folder once
   */
  async commitTemp (tmp: TempChunk, hash: Uint8Array): Promise<string> {
    try {
      if (this.fsync) {
        await tmp.fh.datasync()
      }
    } finally {
      await tmp.fh.close()
    }
    const hex = toHex(hash)
    const sub = join(this.dir, hex.slice(0, 2))
    if (!this.madeDirs.has(sub)) {
      await mkdir(sub, { recursive: true })
      this.madeDirs.add(sub)
    }
    try {
      await rename(tmp.path, join(sub, hex))
    } catch (err: any) {
      if (err?.code !== 'ENOENT') {
        throw err
      }
      // the folder was removed behind our back: make it again
      await mkdir(sub, { recursive: true })
      await rename(tmp.path, join(sub, hex))
    }
    return sub
  }

  async discardTemp (tmp: TempChunk): Promise<void> {
    await tmp.fh.close().catch(() => {})
    await rm(tmp.path, { force: true })
  }

  /** write a whole chunk durably under its hash; returns its folder (see commitTemp) */
  async write (hash: Uint8Array, bytes: Uint8Array): Promise<string> {
    const tmp = await this.openTemp()
    try {
      await this.writeTemp(tmp, bytes, 0)
    } catch (err) {
      await this.discardTemp(tmp)
      throw err
    }
    return this.commitTemp(tmp, hash)
  }

  /** fsync folders so the renames into them survive a power cut */
  async syncDirs (dirs: Iterable<string>): Promise<void> {
    if (!this.fsync) {
      return
    }
    await Promise.all([...dirs].map(async dir => {
      const fh = await open(dir, 'r')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
    }))
  }

  /** the chunk's bytes, or undefined when the file does not exist */
  async read (hash: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      const buf = await readFile(this.pathOf(hash))
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
    } catch (err: any) {
      if (err?.code === 'ENOENT') {
        return undefined
      }
      throw err
    }
  }

  async exists (hash: Uint8Array): Promise<boolean> {
    try {
      await stat(this.pathOf(hash))
      return true
    } catch {
      return false
    }
  }

  async remove (hash: Uint8Array): Promise<void> {
    await rm(this.pathOf(hash), { force: true })
  }

  /** every chunk hash (hex) with a file on disk */
  async * list (): AsyncGenerator<{ hex: string, size: number }> {
    let subs: string[]
    try {
      subs = await readdir(this.dir)
    } catch {
      return
    }
    for (const sub of subs.sort()) {
      if (!/^[0-9a-f]{2}$/.test(sub)) {
        continue
      }
      const names = await readdir(join(this.dir, sub))
      for (const name of names.sort()) {
        if (HEX_NAME.test(name) && name.startsWith(sub)) {
          const s = await stat(join(this.dir, sub, name))
          yield { hex: name, size: s.size }
        }
      }
    }
  }
}
