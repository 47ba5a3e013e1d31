import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { makeTempDir, removeDir, runCli, runCliAll, runJson, startDaemon } from '../daemon/helpers.ts'
import type { CliResult } from '../daemon/helpers.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'

/** one line on stderr, no stack trace, non-zero exit */
function expectOneLineError (r: CliResult, code: number, text: string): void {
  expect(r.code).to.equal(code, r.stderr)
  expect(r.stdout).to.equal('')
  const lines = r.stderr.trim().split('\n')
  expect(lines).to.have.length(1, r.stderr)
  expect(lines[0]).to.match(/^blyd: /)
  expect(lines[0]).to.include(text)
}

describe('blyd CLI', function () {
  this.timeout(120_000)
  let dir: string | undefined
  let daemon: DaemonProcess | undefined

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await daemon?.kill()
    daemon = undefined
    await removeDir(dir)
  })

  it('prints help for the top level and for subcommands', async () => {
    const [top, put, start] = await runCliAll([{ args: ['--help'] }, { args: ['chain', 'put', '--help'] }, { args: ['start', '--help'] }])
    expect(top.code).to.equal(0)
    for (const cmd of ['start', 'stop', 'status', 'id', 'chain']) {
      expect(top.stdout).to.include(`blyd ${cmd}`)
    }
    expect(put.code).to.equal(0)
    expect(put.stdout).to.include('--payload').and.include('--data-dir')
    expect(start.stdout).to.include('--log-level').and.include('--backend')
  })

  it('rejects bad flags, commands and arguments with one line and exit 2', async () => {
    const cases: Array<[string[], string]> = [
      [['status', '--bogus'], 'Unknown argument: bogus'],
      [['frobnicate'], 'frobnicate'],
      [[], 'name a command'],
      [['chain'], 'name a chain command'],
      [['chain', 'get', 'not-hex', '--data-dir', dir ?? ''], '64 hex characters'],
      [['chain', 'put', '--data-dir', dir ?? ''], 'payload'],
      [['chain', 'put', '--payload', 'x', '--type', 'weird'], 'weird'],
      [['status', '--data-dir'], 'data-dir']
    ]
    // each is refused while parsing, before anything is read or written: independent, so run side by side
    const results = await runCliAll(cases.map(([args]) => ({ args })))
    results.forEach((r, i) => { expectOneLineError(r, 2, cases[i][1]) })
  })

  it('rejects bad configuration with one line naming the source', async () => {
    const dataDir = dir ?? ''
    // both are refused by the configuration check, before the data dir is touched: run side by side
    const [flag, env] = await runCliAll([
      { args: ['start', '--data-dir', dataDir, '--log-level', 'loud'] },
      { args: ['start', '--data-dir', dataDir], env: { BLYD_BACKEND: 'quantum' } }
    ])
    expectOneLineError(flag, 1, '--log-level: must be one of')
    expectOneLineError(env, 1, 'BLYD_BACKEND')
    await writeFile(join(dataDir, 'config.json'), JSON.stringify({ colour: 'blue' }))
    expectOneLineError(await runCli(['start', '--data-dir', dataDir]), 1, 'unknown key "colour"')
  })

  it('shows a stack trace only with BLYD_DEBUG=1', async () => {
    const dataDir = dir ?? ''
    await writeFile(join(dataDir, 'config.json'), '{')
    const [quiet, loud] = await runCliAll([
      { args: ['start', '--data-dir', dataDir] },
      { args: ['start', '--data-dir', dataDir], env: { BLYD_DEBUG: '1' } }
    ])
    expect(quiet.stderr).to.not.match(/^\s+at /m)
    expect(loud.code).to.equal(1)
    expect(loud.stderr).to.match(/^\s+at /m)
  })

  it('says when no daemon runs (exit 3) for daemon-only commands', async () => {
    const dataDir = dir ?? ''
    // none of them writes anything: run side by side
    const [status, stop, put, info] = await runCliAll([
      { args: ['status', '--data-dir', dataDir] },
      { args: ['stop', '--data-dir', dataDir] },
      { args: ['chain', 'put', '--payload', '/etc/hostname', '--data-dir', dataDir] },
      { args: ['chain', 'info', '--data-dir', join(dataDir, 'missing')] }
    ])
    expectOneLineError(status, 3, 'no blyd daemon is running')
    expectOneLineError(stop, 3, 'no blyd daemon is running')
    expectOneLineError(put, 3, 'no blyd daemon is running')
    expectOneLineError(info, 3, 'no data dir')
  })

  it('reads the data dir offline when no daemon runs, with the same answers', async () => {
    const dataDir = dir ?? ''
    daemon = await startDaemon(dataDir)
    const file = join(dataDir, 'n.txt')
    await writeFile(file, 'offline please')
    const put = await runJson(['chain', 'put', '--payload', file, '--data-dir', dataDir])
    const onlineInfo = await runJson(['chain', 'info', '--data-dir', dataDir])
    const onlineId = await runJson(['id', '--data-dir', dataDir])
    const onlineBlock = await runJson(['chain', 'get', put.id, '--data-dir', dataDir])
    expect((await runCli(['stop', '--data-dir', dataDir])).code).to.equal(0)
    await daemon.exited

    expect(await runJson(['chain', 'info', '--data-dir', dataDir])).to.deep.equal(onlineInfo)
    expect(await runJson(['id', '--data-dir', dataDir])).to.deep.equal(onlineId)
    expect(await runJson(['chain', 'get', put.id, '--data-dir', dataDir])).to.deep.equal(onlineBlock)
    expect(await runJson(['chain', 'tips', '--data-dir', dataDir])).to.deep.equal({ A: [put.id], B: [] })
    const out = join(dataDir, 'out')
    expect((await runJson(['chain', 'get', put.id, '--payload-out', out, '--data-dir', dataDir])).payloadOut.size).to.equal(14)
    const verify = await runCli(['chain', 'verify', '--data-dir', dataDir])
    expect(verify.code).to.equal(0)
    expect(verify.stdout).to.match(/^ok: 1 blocks/)
    const human = await runCli(['chain', 'info', '--data-dir', dataDir])
    expect(human.stdout).to.include(`tip A    ${put.id}`)
    expectOneLineError(await runCli(['chain', 'get', 'ab'.repeat(32), '--data-dir', dataDir]), 1, 'not in the store')
  })

  it('offline chain info works on a fresh data dir, and the data dir env var is honoured', async () => {
    const dataDir = join(dir ?? '', 'fresh')
    await mkdir(dataDir)
    const info = await runJson(['chain', 'info'], { env: { BLYD_DATA_DIR: dataDir } })
    expect(info).to.deep.equal({ counts: { A: 0, B: 0, total: 0, orphans: 0 }, tips: { A: [], B: [] } })
  })
})
