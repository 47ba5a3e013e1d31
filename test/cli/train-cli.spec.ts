/**
 * `blyd train` through the real CLI, offline (no daemon: the data dir is
 * opened in the CLI process), on the tiny fixture with an ids dataset: the
 * JSON interface of issue 12 exactly, --propose writing a real proposal
 * (visible to `blyd proposal show`), --full, and bad flags as one-line
 * usage errors; then the same job through a running daemon (the IPC `train`
 * method) gives the same losses as the offline run (before any proposal
 * exists: the daemon's key is the validator and could change the live version),
 * and with --via mesh through a second daemon holding the layers (/bly/train).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runCliAll, runJson, startDaemon } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'

/** the JSON fields the issue names: an interface for scripts outside this repository */
const INTERFACE_FIELDS = ['evalLoss', 'losses', 'proposalId', 'steps', 'tokensPerSecond']

function sequences (count: number): number[][] {
  let x = 5
  const next = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x >>> 8 }
  return Array.from({ length: count }, () => Array.from({ length: 40 }, () => next() % 64))
}

describe('blyd train (CLI)', function () {
  this.timeout(300_000)
  let dir: string
  let dd: string[]

  before(async () => {
    dir = await makeTempDir()
    dd = ['--data-dir', join(dir, 'data')]
    await runJson(['model', 'import', fixtureDir('untied-f32'), ...dd])
    await writeFile(join(dir, 'seqs.jsonl'), sequences(24).map(ids => JSON.stringify({ ids })).join('\n') + '\n')
    await runJson(['data', 'add', join(dir, 'seqs.jsonl'), '--name', 'low-ids', '--split-tokens', '20', '--eval-permille', '300', ...dd])
  })

  after(async () => {
    await removeDir(dir)
  })

  const fullArgs = (): string[] => ['train', '--dataset', 'low-ids', '--steps', '2', '--batch', '1', '--seq', '20', '--full', '--lr', '0.001', '--seed', '7', ...dd]
  let offline: any

  it('--full without --propose: proposalId null; the same seed gives the same losses', async () => {
    const a = await runJson([...fullArgs(), '--backend', 'wasm'], { timeoutMs: 240_000 })
    const b = await runJson([...fullArgs(), '--backend', 'wasm'], { timeoutMs: 240_000 })
    expect(a.proposalId).to.equal(null)
    expect(b.losses).to.deep.equal(a.losses)
    expect(b.evalLoss).to.deep.equal(a.evalLoss)
    offline = a
  })

  it('bad flags are one-line usage errors', async () => {
    const results = await runCliAll([
      ['train', '--dataset', 'low-ids', '--steps', '0'],
      ['train', '--dataset', 'low-ids', '--steps', '2', '--lr', '-1'],
      ['train', '--dataset', 'low-ids', '--steps', '2', '--full', '--lora-rank', '4']
    ].map(args => ({ args: [...args, ...dd] })))
    for (const r of results) {
      expect(r.code, r.stderr).to.equal(2)
      expect(r.stdout).to.equal('')
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
    }
  })

  it('through a running daemon (IPC train): the same job gives the same losses', async () => {
    expect(offline, 'the offline run above').to.not.equal(undefined)
    const daemon = await startDaemon(dd[1], ['--backend', 'wasm'])
    try {
      const r = await runJson(fullArgs(), { timeoutMs: 240_000 })
      expect(Object.keys(r).sort()).to.deep.equal(INTERFACE_FIELDS)
      expect(r.losses).to.deep.equal(offline.losses)
      expect(r.evalLoss).to.deep.equal(offline.evalLoss)
      expect(r.proposalId).to.equal(null)
      // status (and the dashboard) show the job with its loss curve
      const shown = await runJson(['status', '--json', ...dd])
      const jobs = shown.learning.training
      expect(jobs).to.have.length(1)
      expect(jobs[0]).to.include({ id: 1, dataset: 'low-ids', state: 'done', steps: 2, step: 2, lossStride: 1, proposalId: null, error: null })
      expect(jobs[0].losses).to.deep.equal(r.losses)
      expect(jobs[0].evalLosses.map((e: any) => e.loss)).to.deep.equal([r.evalLoss.before, r.evalLoss.after])

      // --via mesh: a second daemon holds every layer (its span record) and the job goes through it over /bly/train/1.0.0
      const status = await ipcRequest(daemon.socketPath, 'status')
      const model = (await ipcRequest(daemon.socketPath, 'model.list')).models[0].id as string
      const holder = await startDaemon(join(dir, 'holder'), ['--backend', 'wasm', '--bootstrap', status.addrs[0], '--model', model, '--layers', '0-4', '--full'])
      try {
        const peer = (await ipcRequest(holder.socketPath, 'status')).peerId
        const deadline = Date.now() + 60_000
        while (!(await ipcRequest(daemon.socketPath, 'peers', { model })).spans.some((sp: any) => sp.peerId === peer && sp.start === 0 && sp.end === 4)) {
          expect(Date.now(), 'the holder to serve and announce layers [0, 4)').to.be.below(deadline)
          await new Promise(resolve => setTimeout(resolve, 200))
        }
        const m = await runJson([...fullArgs(), '--via', 'mesh'], { timeoutMs: 240_000 })
        expect(Object.keys(m).sort()).to.deep.equal(INTERFACE_FIELDS)
        expect(m.losses).to.have.length(offline.losses.length)
        for (let i = 0; i < m.losses.length; i++) {
          expect(Math.abs(m.losses[i] - offline.losses[i]) / offline.losses[i], `step ${i + 1}`).to.be.at.most(1e-5)
        }
        expect(Math.abs(m.evalLoss.after - offline.evalLoss.after) / offline.evalLoss.after).to.be.at.most(1e-5)
        expect(m.proposalId).to.equal(null)
        // the daemon's job log shows the mesh job like a local one
        const after = (await ipcRequest(daemon.socketPath, 'status')).learning.training
        expect(after).to.have.length(2)
        expect(after[1]).to.include({ state: 'done', steps: 2, step: 2 })
        expect(after[1].losses).to.deep.equal(m.losses)
      } finally {
        await holder.kill()
      }
    } finally {
      await daemon.kill()
    }
  })

  it('--json prints the interface fields; --propose writes a proposal', async () => {
    const r = await runJson(['train', '--dataset', 'low-ids', '--steps', '4', '--batch', '2', '--seq', '20', '--lora-rank', '2', '--lr', '0.01', '--eval-every', '2', '--propose', '--backend', 'wasm', ...dd], { timeoutMs: 240_000 })
    expect(Object.keys(r).sort()).to.deep.equal(INTERFACE_FIELDS)
    expect(r.steps).to.equal(4)
    expect(r.losses).to.have.length(4)
    expect(r.losses.every((l: number) => Number.isFinite(l) && l > 0)).to.equal(true)
    expect(Object.keys(r.evalLoss).sort()).to.deep.equal(['after', 'before'])
    expect(r.tokensPerSecond).to.be.greaterThan(0)
    expect(r.proposalId).to.match(/^[0-9a-f]{64}$/)
    const shown = await runJson(['proposal', 'show', r.proposalId, ...dd])
    expect(shown.id).to.equal(r.proposalId)
    expect(shown.status).to.equal('pending')
  })
})
