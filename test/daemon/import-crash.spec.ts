/**
 * Issue 16, item 5: a model import killed half way (SIGKILL in the middle of
 * a layer block's payload) leaves the manifest and some layer blocks. `blyd
 * model list` and `show` must say the model is incomplete and which units are
 * missing, offline and through a daemon, and `generate` must refuse at once
 * with ERR_MODEL_INCOMPLETE naming them. A second import resumes and the
 * model then generates the reference tokens.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { startMeshNode } from '../mesh/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { ipcRequest, makeTempDir, rejection, removeDir, runCli, runJson } from './helpers.ts'
import type { MeshNode } from '../mesh/helpers.ts'
import type { Expected } from '../model/fixtures.ts'

/** "2-5" for a contiguous run, as the CLI and the errors write unit lists */
function unitRun (units: number[]): string {
  expect(units).to.not.have.length(0)
  expect(units).to.deep.equal(Array.from({ length: units.length }, (_, i) => units[0] + i), 'a crash mid-import leaves a contiguous run of units missing')
  return units.length === 1 ? String(units[0]) : `${units[0]}-${units[units.length - 1]}`
}

const CHILD = fileURLToPath(new URL('../model/fixtures/import-until-killed.ts', import.meta.url))

/** run the import child until it kills itself; resolves once it died of SIGKILL */
async function importUntilKilled (dataDir: string, checkpoint: string, fraction: number): Promise<void> {
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  const child = spawn(process.execPath, [CHILD, dataDir, checkpoint, String(fraction)], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => {
    child.on('exit', (c, s) => { resolve([c, s]) })
  })
  clearTimeout(timer)
  if (signal !== 'SIGKILL' || stderr !== '') {
    throw new Error(`the import child exited with ${code ?? signal}, not killed mid-import: ${stderr}`)
  }
}

describe('a model import killed half way', function () {
  this.timeout(180_000)
  let root: string
  let node: MeshNode | undefined

  before(async () => {
    root = await makeTempDir()
  })

  after(async () => {
    await node?.daemon.kill()
    await removeDir(root)
  })

  it('is listed and shown as incomplete with its missing units, and generate refuses naming them', async () => {
    const checkpoint = fixtureDir('untied-f32')
    const dataDir = join(root, 'node')
    await importUntilKilled(dataDir, checkpoint, 0.35)

    // offline, straight on the data dir the crash left
    const { models } = await runJson(['model', 'list', '--data-dir', dataDir])
    expect(models).to.have.length(1)
    const summary = models[0]
    expect(summary.units).to.equal(6)
    expect(summary.complete).to.equal(false)
    const missing: number[] = summary.missingUnits
    // killed half way through the layers: the embedding is stored, the head is not
    expect(missing).to.not.include(0)
    expect(missing).to.include(5)
    expect(summary.unitsStored).to.equal(6 - missing.length)
    expect(summary.manifestStored).to.equal(true)
    const units = unitRun(missing)

    const show = await runJson(['model', 'show', summary.id, '--data-dir', dataDir])
    expect(show.complete).to.equal(false)
    expect(show.missingUnits).to.deep.equal(missing)
    expect(show.unitBlocks.filter((u: any) => !u.stored).map((u: any) => u.unit)).to.deep.equal(missing)
    expect(show.unitBlocks.filter((u: any) => u.stored).every((u: any) => u.block != null)).to.equal(true)

    const listText = await runCli(['model', 'list', '--data-dir', dataDir])
    expect(listText.code).to.equal(0)
    expect(listText.stdout).to.include(`${6 - missing.length}/6 units (incomplete: units ${units} missing)`)
    const showText = await runCli(['model', 'show', summary.id, '--data-dir', dataDir])
    expect(showText.code).to.equal(0)
    expect(showText.stdout).to.include(`(incomplete: units ${units} missing)`)

    const local = await runCli(['generate', '--local', '--backend', 'cpu', '--workers', '0', '--model', summary.id, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--data-dir', dataDir])
    expect(local.code).to.equal(1)
    expect(local.stdout).to.equal('')
    expect(local.stderr).to.include(`model ${summary.id} is incomplete here: ${missing.length} of 6 units missing (units ${units}`)
    expect(local.stderr).to.include('head')

    // the crash left the store itself consistent
    const verify = await runJson(['chain', 'verify', '--data-dir', dataDir])
    expect(verify.issues).to.deep.equal([])

    // through a daemon on the same data dir
    node = await startMeshNode(root, 'node')
    const online = await ipcRequest(node.daemon.socketPath, 'model.list')
    expect(online.models).to.deep.equal([{ ...summary, loaded: false }])
    const err: any = await rejection(ipcRequest(node.daemon.socketPath, 'generate', { model: summary.id, promptIds: [1, 2, 3], maxNewTokens: 2 }))
    expect(err.data?.code).to.equal('ERR_MODEL_INCOMPLETE')
    expect(err.message).to.include(`is incomplete here: ${missing.length} of 6 units missing (units ${units}`)
    const viaCli = await runCli(['generate', '--model', summary.id, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--data-dir', dataDir])
    expect(viaCli.code).to.equal(1)
    expect(viaCli.stderr).to.include(`model ${summary.id} is incomplete here`)

    // the import resumes; then the model is complete and generates the reference tokens
    const resumed = await runJson(['model', 'import', checkpoint, '--data-dir', dataDir])
    expect(resumed.modelId).to.equal(summary.id)
    expect(resumed.existing).to.equal(1 + 6 - missing.length)
    const after = (await runJson(['model', 'list', '--data-dir', dataDir])).models[0]
    expect(after).to.include({ complete: true, unitsStored: 6 })
    expect(after.missingUnits).to.deep.equal([])
    const expected: Expected = JSON.parse(await readFile(join(checkpoint, 'expected.json'), 'utf8'))
    const { prompt, tokens } = expected.greedy
    const generated = await runJson(['generate', '--model', summary.id, '--prompt-ids', prompt.join(','), '--max-new-tokens', '4', '--data-dir', dataDir])
    expect(generated.tokens).to.deep.equal(tokens.slice(0, 4))
  })
})
