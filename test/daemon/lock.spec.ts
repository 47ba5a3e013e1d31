import { spawn } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { DaemonRunningError } from '../../src/daemon/errors.ts'
import { DataDirLock, isProcessAlive } from '../../src/daemon/lock.ts'
import { makeTempDir, removeDir } from './helpers.ts'

async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise(resolve => child.on('exit', resolve))
  return child.pid ?? 0
}

describe('data dir lock', () => {
  let dir: string

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  it('writes the pid, refuses a second owner naming the pid, and releases', async () => {
    const a = new DataDirLock({ dataDir: dir })
    await a.acquire()
    expect(await readFile(join(dir, 'blyd.pid'), 'utf8')).to.equal(`${process.pid}\n`)

    // a live process (pid 1) holding the lock
    await a.release()
    await expect(stat(join(dir, 'blyd.pid'))).to.eventually.be.rejected()
    await writeFile(join(dir, 'blyd.pid'), '1\n')
    const b = new DataDirLock({ dataDir: dir })
    try {
      await b.acquire()
      expect.fail('acquired a lock held by a live process')
    } catch (err) {
      expect(err).to.be.instanceOf(DaemonRunningError)
      expect((err as DaemonRunningError).pid).to.equal(1)
      expect((err as Error).message).to.include('pid 1')
    }
    expect(b.isHeld).to.equal(false)
  })

  it('takes over a stale lock of a dead process', async () => {
    const pid = await deadPid()
    expect(isProcessAlive(pid)).to.equal(false)
    await writeFile(join(dir, 'blyd.pid'), `${pid}\n`)
    const lock = new DataDirLock({ dataDir: dir })
    expect(await lock.acquire()).to.deep.equal({ stalePid: pid })
    expect(await readFile(join(dir, 'blyd.pid'), 'utf8')).to.equal(`${process.pid}\n`)
    await lock.release()
  })

  it('takes over a lock file with garbage content', async () => {
    await writeFile(join(dir, 'blyd.pid'), 'garbage')
    const lock = new DataDirLock({ dataDir: dir })
    await lock.acquire()
    expect(lock.isHeld).to.equal(true)
    await lock.release()
  })
})
