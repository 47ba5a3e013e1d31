import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { createChainStore } from '../../src/chain/index.ts'
import { removeDir, tempDir } from './helpers.ts'
import type { ChildProcess } from 'node:child_process'

const WRITER = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))

interface Added { id: string, payloadHash: string }

interface KillPoint {
  /** kill after the writer reported this many committed blocks ... */
  blocks: number
  /** ... on that event: the commit itself, or the next payload being half streamed */
  on: 'added' | 'mid'
  /** ... this many ms later */
  delayMs: number
}

/** run the writer and SIGKILL it at `kill`; returns the blocks it reported committed */
async function runAndKill (dir: string, round: number, kill: KillPoint, children: Set<ChildProcess>): Promise<Added[]> {
  const child = spawn(process.execPath, [WRITER, dir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const added: Added[] = []
  let stderr = ''
  let buffered = ''
  let killing = false
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  return new Promise<Added[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`writer made no progress: ${stderr}`))
    }, 60_000)
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString()
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [what, id, payloadHash] = buffered.slice(0, nl).split(' ')
        buffered = buffered.slice(nl + 1)
        if (what === 'added') {
          added.push({ id, payloadHash })
        }
        if (what === kill.on && added.length === kill.blocks && !killing) {
          killing = true
          setTimeout(() => child.kill('SIGKILL'), kill.delayMs)
        }
      }
    })
    child.on('exit', (code, sig) => {
      clearTimeout(timer)
      children.delete(child)
      if (sig === 'SIGKILL') {
        resolve(added)
      } else {
        reject(new Error(`writer exited with ${code}: ${stderr}`))
      }
    })
  })
}

describe('chain store crash safety', function () {
  this.timeout(120_000)
  let dir: string
  const children = new Set<ChildProcess>()

  beforeEach(async () => {
    dir = await tempDir('bly-crash-')
  })

  afterEach(async () => {
    for (const child of children) {
      child.kill('SIGKILL')
    }
    await removeDir(dir)
  })

  it('a writer SIGKILLed mid-write leaves no partial block and every committed block intact', async () => {
    const committed = new Map<string, string>()
    // kill at varied points: half-way through streaming a payload (chunk files
    // written or in flight, block not committed), right after a commit, a few ms later
    const kills: KillPoint[] = [
      { blocks: 1, on: 'mid', delayMs: 0 },
      { blocks: 2, on: 'added', delayMs: 0 },
      { blocks: 1, on: 'mid', delayMs: 6 },
      { blocks: 2, on: 'added', delayMs: 5 },
      { blocks: 1, on: 'mid', delayMs: 10 },
      { blocks: 1, on: 'added', delayMs: 11 }
    ]
    let garbage = 0
    for (let round = 0; round < kills.length; round++) {
      const added = await runAndKill(dir, round, kills[round], children)
      expect(added.length).to.be.greaterThanOrEqual(1)
      for (const a of added) {
        committed.set(a.id, a.payloadHash)
      }

      const store = createChainStore({ path: dir })
      await store.start()
      try {
        const report = await store.verify()
        expect(report.issues).to.deep.equal([])
        expect(report.ok).to.equal(true)
        // every block the writer reported is visible with its whole payload
        for (const [id, payloadHash] of committed) {
          const block = await store.get(Buffer.from(id, 'hex'))
          expect(block, `block ${id} lost`).to.not.equal(undefined)
          expect(block?.payloadComplete).to.equal(true)
          const hash = createHash('sha256')
          for await (const chunk of store.readPayload(Buffer.from(id, 'hex'))) {
            hash.update(chunk)
          }
          expect(hash.digest('hex')).to.equal(payloadHash)
        }
        // at most the one in-flight block may have committed without being reported, and it is whole too
        const counts = await store.counts()
        expect(counts.total - committed.size).to.be.within(0, round + 1)
        for await (const block of store.topological()) {
          expect(block.payloadComplete).to.equal(true)
          let size = 0
          for await (const chunk of store.readPayload(block.id)) {
            size += chunk.length
          }
          expect(BigInt(size)).to.equal(block.header.payloadSize)
        }
        garbage += report.garbageChunks
        await store.gc()
        expect((await store.verify()).ok).to.equal(true)
      } finally {
        await store.stop()
      }
    }
    process.stdout.write(`      (${committed.size} blocks committed, ${garbage} orphaned chunk files collected)\n`)
  })
})
