/**
 * `blyd generate --draft MODEL --speculate K` through the real CLI, in-process
 * (--local): the fixture drafting for itself reproduces its greedy tokens
 * with every draft accepted, and a draft of another vocabulary is refused.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { makeTempDir, removeDir, runCli, runJson } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import type { Expected } from '../model/fixtures.ts'

describe('blyd generate --draft (CLI)', function () {
  this.timeout(120_000)
  const env = { dir: '' }

  before(async () => {
    env.dir = await makeTempDir()
  })

  after(async () => {
    await removeDir(env.dir)
  })

  it('a model drafting for itself gives its greedy tokens, all drafts accepted; a draft of another vocabulary is refused', async () => {
    const dataDir = join(env.dir, 'data')
    const exp: Expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
    const demoDir = join(env.dir, 'demo')
    // the import and the demo checkpoint (written outside the data dir, imported below) are independent: side by side
    const [{ modelId }] = await Promise.all([
      runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', dataDir]),
      runJson(['model', 'init-demo', demoDir, '--vocab', '64', '--no-tokenizer', '--json'])
    ])
    const gen = await runJson(['generate', '--model', modelId, '--draft', modelId, '--speculate', '4', '--temperature', '0',
      '--prompt-ids', exp.greedy.prompt.join(','), '--max-new-tokens', '16', '--local', '--json', '--data-dir', dataDir])
    expect(gen.tokens).to.deep.equal(exp.greedy.tokens.slice(0, 16))
    expect(gen.tokens).to.have.length(16)
    expect(gen.speculative.k).to.equal(4)
    expect(gen.speculative.acceptanceRate).to.equal(1)
    expect(gen.speculative.proposed).to.be.above(0)
    expect(gen.speculative.accepted).to.equal(gen.speculative.proposed)
    // every accepted draft saves a target step
    expect(gen.speculative.targetSteps).to.be.below(16)

    const demo = await runJson(['model', 'import', demoDir, '--data-dir', dataDir])
    const refused = await runCli(['generate', '--model', modelId, '--draft', demo.modelId, '--prompt-ids', '1,2', '--max-new-tokens', '4', '--local', '--data-dir', dataDir])
    expect(refused.code, refused.stderr).to.not.equal(0)
    expect(refused.stdout).to.equal('')
    const lines = refused.stderr.trim().split('\n')
    expect(lines, refused.stderr).to.have.length(1)
    expect(lines[0]).to.match(/^blyd: /)
    expect(lines[0]).to.include('a draft must share the target\'s vocabulary')

    const lone = await runCli(['generate', '--model', modelId, '--speculate', '2', '--prompt-ids', '1,2', '--local', '--data-dir', dataDir])
    expect(lone.code).to.not.equal(0)
    expect(lone.stderr).to.include('--speculate needs --draft')
  })
})
