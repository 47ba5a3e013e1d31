/**
 * `blyd generate --draft` through the mesh, with real daemons on 127.0.0.1:
 * node 2 serves every layer of the tiny fixture, node 1 (which imported it)
 * generates through node 2 with the model drafting for itself, and gets the
 * reference greedy tokens with every draft accepted.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson, startDaemon } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'
import type { Expected } from '../model/fixtures.ts'

describe('mesh: speculative generation', function () {
  this.timeout(120_000)
  const env: { root: string, daemons: DaemonProcess[] } = { root: '', daemons: [] }

  before(async () => {
    env.root = await makeTempDir()
  })

  after(async () => {
    await Promise.allSettled(env.daemons.map(async d => d.kill()))
    await removeDir(env.root)
  })

  it('the pipeline is the target, a whole local model the draft', async () => {
    const exp: Expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
    const dir1 = join(env.root, 'n1')
    const d1 = await startDaemon(dir1, ['--backend', 'cpu'])
    env.daemons.push(d1)
    const model = (await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', dir1])).modelId
    const addr = (await ipcRequest(d1.socketPath, 'status')).addrs[0]
    const d2 = await startDaemon(join(env.root, 'n2'), ['--backend', 'cpu', '--bootstrap', addr, '--model', model, '--layers', '0-4'])
    env.daemons.push(d2)
    const peer2 = (await ipcRequest(d2.socketPath, 'status')).peerId
    const deadline = Date.now() + 60_000
    while (!(await ipcRequest(d1.socketPath, 'peers', { model })).spans.some((s: any) => s.peerId === peer2 && s.start === 0 && s.end === 4)) {
      expect(Date.now(), 'node 2 to serve and announce layers [0, 4)').to.be.below(deadline)
      await sleep(200)
    }
    const gen = await runJson(['generate', '--model', model, '--draft', model, '--speculate', '3', '--temperature', '0',
      '--prompt-ids', exp.greedy.prompt.join(','), '--max-new-tokens', String(exp.greedy.tokens.length), '--json', '--data-dir', dir1])
    expect(gen.via).to.equal('mesh')
    expect(gen.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[peer2, 0, 4]])
    expect(gen.tokens).to.deep.equal(exp.greedy.tokens)
    expect(gen.speculative.k).to.equal(3)
    expect(gen.speculative.acceptanceRate).to.equal(1)
    expect(gen.speculative.targetSteps).to.be.below(exp.greedy.tokens.length)
  })
})
