/**
 * Content-addressed chunk files: `dir/ab/<sha256 hex>`, written to a temp
 * file under `dir/tmp`, fsynced, then renamed into place. Idempotent since a
 * name is the hash of the content; a reader always verifies the hash anyway.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { toHex } from './validate.ts'

const HEX_NAME = /^[0-9a-f]{64}$/

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

  /**
   * write a chunk durably under its hash; returns the folder it went into so
   * the caller can fsync each touched folder once (see syncDirs)
   */
  async write (hash: Uint8Array, bytes: Uint8Array): Promise<string> {
    const hex = toHex(hash)
    const sub = join(this.dir, hex.slice(0, 2))
    if (!this.madeDirs.has(sub)) {
      await mkdir(sub, { recursive: true })
      this.madeDirs.add(sub)
    }
    const tmp = join(this.tmpDir, `${hex}.${process.pid}.${this.tmpCounter++}`)
    const fh = await open(tmp, 'w')
    try {
      await fh.writeFile(bytes)
      if (this.fsync) {
        await fh.datasync()
      }
    } finally {
      await fh.close()
    }
    await rename(tmp, join(sub, hex))
    return sub
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
