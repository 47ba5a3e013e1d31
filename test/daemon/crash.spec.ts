/**
 * Crash acceptance: SIGKILL the daemon in the middle of storing a large
 * payload, restart it on the same data dir, and check that the store is clean,
 * the half-written block is not visible, and every acknowledged block is intact.
 *
 * The large payload is fed through a FIFO, so the kill lands while the daemon
 * is provably mid-write (it has consumed part of the payload and waits for the
 * rest), with no timing guess.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { expect } from 'aegir/chai'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import { ipcRequest, makeTempDir, mapConcurrently, removeDir, runCli, runJson, startDaemon } from './helpers.ts'
import type { DaemonProcess } from './helpers.ts'

const MiB = 1024 * 1024

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** how many content-addressed files (64-hex names) the store holds */
async function chunkFileCount (dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[])
  return entries.filter(e => /(^|\/)[0-9a-f]{64}$/.test(e)).length
}

describe('crash safety (SIGKILL during a put)', function () {
  this.timeout(300_000)
  let dir: string | undefined
  let work: string | undefined
  const daemons: DaemonProcess[] = []

  before(async () => {
    dir = await makeTempDir()
    work = await makeTempDir()
  })

  after(async () => {
    await Promise.all(daemons.map(async d => d.kill()))
    await removeDir(dir)
    await removeDir(work)
  })

  it('restarts clean with every acknowledged block intact and no trace of the killed one', async () => {
    const dataDir = dir ?? ''
    const workDir = work ?? ''
    const first = await startDaemon(dataDir)
    daemons.push(first)

    // acknowledged blocks: small ones and multi-MiB ones, chained on A
    const acked: Array<{ id: string, sha256: string, size: number }> = []
    const sizes = [1, 300, 4096, 3 * MiB + 17, 9 * MiB, 5 * MiB - 1]
    for (const [i, size] of sizes.entries()) {
      const bytes = randomBytes(size)
      const file = join(workDir, `p${i}`)
      await writeFile(file, bytes)
      const result = i === 0
        ? await runJson(['chain', 'put', '--payload', file, '--data-dir', dataDir])
        : await ipcRequest(first.socketPath, 'chain.put', { payload: file })
      expect(result.id).to.match(/^[0-9a-f]{64}$/)
      expect(result.payloadSize).to.equal(String(size))
      acked.push({ id: result.id, sha256: sha256(bytes), size })
    }
    const before = await ipcRequest(first.socketPath, 'chain.info')
    expect(before.counts.A).to.equal(acked.length)
    expect(before.tips.A).to.deep.equal([acked[acked.length - 1].id])

    // a large put through a FIFO: feed 40 MiB, wait for its chunks to land, then SIGKILL
    const fifo = join(workDir, 'big.fifo')
    await promisify(execFile)('mkfifo', [fifo])
    const chunksBefore = await chunkFileCount(join(dataDir, 'chain'))
    const client = await IpcClient.connect({ socketPath: first.socketPath })
    const put = client.request('chain.put', { payload: fifo }).then(
      () => { throw new Error('the killed put was acknowledged') },
      (err: Error) => err
    )
    const writer = createWriteStream(fifo)
    writer.on('error', () => {}) // EPIPE once the reader dies
    // a 64 MiB payload of which only 40 MiB ever arrive before the kill
    const fed = 40 * MiB
    const piece = randomBytes(MiB)
    for (let sent = 0; sent < fed; sent += MiB) {
      if (!writer.write(piece)) {
        await new Promise<void>(resolve => writer.once('drain', () => { resolve() }))
      }
    }
    for (let i = 0; i < 200 && await chunkFileCount(join(dataDir, 'chain')) === chunksBefore; i++) {
      await sleep(50)
    }
    expect(await chunkFileCount(join(dataDir, 'chain'))).to.be.above(chunksBefore, 'the big put never started writing chunks')
    first.child.kill('SIGKILL')
    expect((await first.exited).signal).to.equal('SIGKILL')
    writer.destroy()
    const putError = await put
    expect(putError.message).to.not.include('acknowledged')
    client.close()

    // the kill left a stale lock and socket behind; a restart takes them over
    expect((await stat(join(dataDir, 'blyd.pid'))).isFile()).to.equal(true)
    expect((await stat(join(dataDir, 'blyd.sock'))).isSocket()).to.equal(true)
    const second = await startDaemon(dataDir)
    daemons.push(second)
    expect(second.stderr).to.include('lock.stale')

    // read-only queries to the restarted daemon (each get writes its own file): two at a time
    const [report, info] = await mapConcurrently([['chain', 'verify'], ['chain', 'info']], async args => runJson([...args, '--data-dir', dataDir]))
    expect(report.issues).to.deep.equal([])
    expect(report.ok).to.equal(true)
    expect(report.blocks).to.equal(acked.length)

    expect(info.counts).to.include({ A: acked.length, B: 0, total: acked.length })
    expect(info.tips.A).to.deep.equal([acked[acked.length - 1].id])

    const gets = await mapConcurrently(acked, async block => {
      const out = join(workDir, `out-${block.id}`)
      return { out, got: await runJson(['chain', 'get', block.id, '--payload-out', out, '--data-dir', dataDir]) }
    })
    for (const [i, { out, got }] of gets.entries()) {
      const block = acked[i]
      expect(got.payloadComplete).to.equal(true)
      expect(got.payloadSize).to.equal(String(block.size))
      expect(got.payloadOut.sha256).to.equal(block.sha256)
      expect(sha256(await readFile(out))).to.equal(block.sha256)
    }

    // the chain goes on from the last acknowledged block
    const next = join(workDir, 'next')
    await writeFile(next, 'after the crash')
    const after = await runJson(['chain', 'put', '--payload', next, '--data-dir', dataDir])
    expect((await runJson(['chain', 'get', after.id, '--data-dir', dataDir])).parents).to.deep.equal([acked[acked.length - 1].id])

    // and the data dir verifies offline too, after a clean stop
    expect((await runCli(['stop', '--data-dir', dataDir])).code).to.equal(0)
    const offline = await runJson(['chain', 'verify', '--data-dir', dataDir])
    expect(offline).to.include({ ok: true, blocks: acked.length + 1 })
  })
})
