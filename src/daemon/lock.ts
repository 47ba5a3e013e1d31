/**
 * The data dir lock: `DIR/blyd.pid` holding the owner's pid. It is created
 * exclusively (a fully written temp file hard-linked into place, which fails
 * when the name exists, like O_EXCL but never showing a half-written pid), so
 * two processes never both own a data dir. A lock whose pid is no longer
 * alive is stale and is taken over.
 */
import { randomBytes } from 'node:crypto'
import { link, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { PID_FILE_NAME } from './constants.ts'
import { DaemonRunningError, LockError } from './errors.ts'

export function pidFile (dataDir: string): string {
  return join(dataDir, PID_FILE_NAME)
}

/** True when a process with this pid exists (EPERM counts: it exists, owned by someone else). */
export function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err.code === 'EPERM'
  }
}

/** The pid recorded in the lock file, or undefined when there is no (readable) lock file. */
export async function readLockPid (dataDir: string): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(pidFile(dataDir), 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') {
      return undefined
    }
    throw new LockError(`cannot read ${pidFile(dataDir)} (${err.code ?? err.message})`, { cause: err })
  }
  const m = /^(\d+)\s*$/.exec(text)
  return m == null ? undefined : Number(m[1])
}

/** The pid of the live process holding the data dir, if any. */
export async function runningPid (dataDir: string): Promise<number | undefined> {
  const pid = await readLockPid(dataDir)
  return pid != null && isProcessAlive(pid) ? pid : undefined
}

export interface LockInit {
  dataDir: string
  /** the owner's pid, default process.pid */
  pid?: number
}

export class DataDirLock {
  readonly file: string
  private readonly dataDir: string
  private readonly pid: number
  private held: boolean

  constructor (init: LockInit) {
    this.dataDir = init.dataDir
    this.file = pidFile(init.dataDir)
    this.pid = init.pid ?? process.pid
    this.held = false
  }

  get isHeld (): boolean {
    return this.held
  }

  /** Take the lock; throws DaemonRunningError naming the live owner. Returns the stale pid it replaced, if any. */
  async acquire (): Promise<{ stalePid?: number }> {
    if (this.held) {
      return {}
    }
    const tmp = join(this.dataDir, `.${PID_FILE_NAME}.${randomBytes(6).toString('hex')}.tmp`)
    const handle = await open(tmp, 'wx', 0o644)
    try {
      await handle.writeFile(`${this.pid}\n`)
      await handle.sync()
    } finally {
      await handle.close()
    }
    let stalePid: number | undefined
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await link(tmp, this.file)
          this.held = true
          return stalePid != null ? { stalePid } : {}
        } catch (err: any) {
          if (err.code !== 'EEXIST') {
            throw new LockError(`cannot create ${this.file} (${err.code ?? err.message})`, { cause: err })
          }
        }
        const owner = await readLockPid(this.dataDir)
        if (owner != null && owner !== this.pid && isProcessAlive(owner)) {
          throw new DaemonRunningError(`another blyd process (pid ${owner}) is using ${this.dataDir}; stop it first ("blyd stop --data-dir ${this.dataDir}")`, owner)
        }
        // stale (dead owner, unreadable or empty content): take it over
        stalePid = owner
        await unlink(this.file).catch((err: any) => {
          if (err.code !== 'ENOENT') {
            throw new LockError(`cannot remove stale lock ${this.file} (${err.code ?? err.message})`, { cause: err })
          }
        })
      }
      throw new LockError(`could not take the lock ${this.file}: it keeps changing hands`)
    } finally {
      await unlink(tmp).catch(() => {})
    }
  }

  /** Remove the lock file if it is still ours. */
  async release (): Promise<void> {
    if (!this.held) {
      return
    }
    this.held = false
    const owner = await readLockPid(this.dataDir).catch(() => undefined)
    if (owner === this.pid) {
      await unlink(this.file).catch(() => {})
    }
  }
}
