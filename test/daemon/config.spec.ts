import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { loadConfig, resolveDataDir } from '../../src/daemon/config.ts'
import { DEFAULT_IPC_MAX_BATCH, DEFAULT_IPC_MAX_CONNECTIONS, DEFAULT_IPC_MAX_LINE_BYTES } from '../../src/daemon/constants.ts'
import { ConfigError } from '../../src/daemon/errors.ts'
import { makeTempDir, rejection, removeDir } from './helpers.ts'

describe('daemon config', () => {
  let dir: string

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  it('resolves the data dir from flag, env, then home', () => {
    expect(resolveDataDir({ dataDir: 'x', env: { BLYD_DATA_DIR: '/e' }, cwd: '/c' })).to.equal('/c/x')
    expect(resolveDataDir({ env: { BLYD_DATA_DIR: '/e' } })).to.equal('/e')
    expect(resolveDataDir({ env: {}, home: '/h' })).to.equal('/h/.blyd')
  })

  it('has defaults with the socket inside the data dir', async () => {
    const config = await loadConfig({ dataDir: dir, env: {} })
    expect(config.dataDir).to.equal(dir)
    expect(config.ipcSocket).to.equal(join(dir, 'blyd.sock'))
    expect(config.ipcMaxLineBytes).to.equal(DEFAULT_IPC_MAX_LINE_BYTES)
    expect(config.backend).to.equal('auto')
    expect(config.logLevel).to.equal('info')
    expect(config.model).to.equal(null)
  })

  it('layers config.json < env < flags', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ logLevel: 'warn', backend: 'cpu', layers: '0-4', listen: ['/ip4/127.0.0.1/tcp/1'] }))
    const fromFile = await loadConfig({ dataDir: dir, env: {} })
    expect(fromFile).to.include({ logLevel: 'warn', backend: 'cpu', layers: '0-4' })
    expect(fromFile.listen).to.deep.equal(['/ip4/127.0.0.1/tcp/1'])

    const fromEnv = await loadConfig({ dataDir: dir, env: { BLYD_LOG_LEVEL: 'debug', BLYD_LISTEN: '/ip4/127.0.0.1/tcp/2, /ip4/127.0.0.1/tcp/3' } })
    expect(fromEnv.logLevel).to.equal('debug')
    expect(fromEnv.backend).to.equal('cpu')
    expect(fromEnv.listen).to.deep.equal(['/ip4/127.0.0.1/tcp/2', '/ip4/127.0.0.1/tcp/3'])

    const fromFlags = await loadConfig({ dataDir: dir, env: { BLYD_LOG_LEVEL: 'debug' }, flags: { logLevel: 'error', ipcSocket: 's.sock', ipcMaxLineBytes: '4096' } })
    expect(fromFlags.logLevel).to.equal('error')
    expect(fromFlags.ipcSocket).to.equal(join(dir, 's.sock'))
    expect(fromFlags.ipcMaxLineBytes).to.equal(4096)
  })

  it('rejects an unknown config.json key naming it', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ logLevle: 'warn' }))
    const err = await rejection(loadConfig({ dataDir: dir, env: {} }))
    expect(err).to.be.instanceOf(ConfigError)
    expect(err.message).to.include('unknown key "logLevle"')
    expect(err.message).to.not.include('\n')
  })

  it('rejects bad values from every source with the source named', async () => {
    await writeFile(join(dir, 'config.json'), '{ not json')
    expect((await rejection(loadConfig({ dataDir: dir, env: {} }))).message).to.include('invalid JSON')

    await writeFile(join(dir, 'config.json'), JSON.stringify({ layers: '5-2' }))
    expect((await rejection(loadConfig({ dataDir: dir, env: {} }))).message).to.match(/"layers".*START < END/)

    await writeFile(join(dir, 'config.json'), '[]')
    expect((await rejection(loadConfig({ dataDir: dir, env: {} }))).message).to.include('JSON object')

    await mkdir(join(dir, 'b'))
    expect((await rejection(loadConfig({ dataDir: join(dir, 'b'), env: { BLYD_BACKEND: 'gpu' } }))).message).to.match(/^BLYD_BACKEND: must be one of/)
    expect((await rejection(loadConfig({ dataDir: join(dir, 'b'), env: {}, flags: { ipcMaxLineBytes: 'lots' } }))).message).to.match(/^--ipc-max-line-bytes: must be an integer/)
    expect((await rejection(loadConfig({ dataDir: join(dir, 'b'), env: {}, flags: { bootstrap: ['/ip4/1.2.3.4/tcp/1'] } }))).message).to.include('/p2p/')
    expect((await rejection(loadConfig({ dataDir: join(dir, 'b'), env: {}, flags: { model: 'XYZ' } }))).message).to.include('hex block id')
  })

  it('IPC limits: defaults, config.json < env < flags, and a line budget at least one line', async () => {
    const defaults = await loadConfig({ dataDir: dir, env: {} })
    expect(defaults).to.include({ ipcMaxConnections: DEFAULT_IPC_MAX_CONNECTIONS, ipcMaxBatch: DEFAULT_IPC_MAX_BATCH, ipcMaxBufferedLineBytes: 2 * DEFAULT_IPC_MAX_LINE_BYTES })
    // the documented defaults (README, test/daemon/ipc-limits.spec.ts)
    expect(defaults).to.include({ ipcMaxConnections: 128, ipcMaxBatch: 100, ipcMaxBufferedLineBytes: 32 * 1024 * 1024 })
    expect((await loadConfig({ dataDir: dir, env: {}, flags: { ipcMaxLineBytes: '4096' } })).ipcMaxBufferedLineBytes).to.equal(2 * 4096)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ipcMaxConnections: 16, ipcMaxBatch: 10, ipcMaxBufferedLineBytes: 1 << 20, ipcMaxLineBytes: 4096 }))
    expect(await loadConfig({ dataDir: dir, env: {} })).to.include({ ipcMaxConnections: 16, ipcMaxBatch: 10, ipcMaxBufferedLineBytes: 1 << 20, ipcMaxLineBytes: 4096 })
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ipcMaxLineBytes: DEFAULT_IPC_MAX_LINE_BYTES, ipcMaxBufferedLineBytes: 1 << 20 }))
    expect((await rejection(loadConfig({ dataDir: dir, env: {} }))).message).to.equal(`ipcMaxBufferedLineBytes (1048576) must be at least ipcMaxLineBytes (${DEFAULT_IPC_MAX_LINE_BYTES}): one line of the longest size must fit`)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ipcMaxBufferedLineBytes: 1 << 20, ipcMaxLineBytes: 4096 }))
    const env = { BLYD_IPC_MAX_CONNECTIONS: '32', BLYD_IPC_MAX_BATCH: '20', BLYD_IPC_MAX_BUFFERED_LINE_BYTES: '65536' }
    expect(await loadConfig({ dataDir: dir, env })).to.include({ ipcMaxConnections: 32, ipcMaxBatch: 20, ipcMaxBufferedLineBytes: 65536 })
    expect(await loadConfig({ dataDir: dir, env, flags: { ipcMaxConnections: '2', ipcMaxBatch: '1', ipcMaxBufferedLineBytes: '8192' } })).to.include({ ipcMaxConnections: 2, ipcMaxBatch: 1, ipcMaxBufferedLineBytes: 8192 })
    expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { ipcMaxConnections: '0' } }))).message).to.match(/^--ipc-max-connections: must be an integer from 1 to 65536/)
    expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { ipcMaxBatch: '100001' } }))).message).to.match(/^--ipc-max-batch: must be an integer from 1 to 100000/)
    expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { ipcMaxBufferedLineBytes: '2048' } }))).message).to.equal('ipcMaxBufferedLineBytes (2048) must be at least ipcMaxLineBytes (4096): one line of the longest size must fit')
  })

  it('workers: auto by default, a count 0..64 from config.json, env or flag', async () => {
    expect((await loadConfig({ dataDir: dir, env: {} })).workers).to.equal('auto')
    await writeFile(join(dir, 'config.json'), JSON.stringify({ workers: 4 }))
    expect((await loadConfig({ dataDir: dir, env: {} })).workers).to.equal(4)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_WORKERS: '0' } })).workers).to.equal(0)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_WORKERS: '0' }, flags: { workers: 'auto' } })).workers).to.equal('auto')
    expect((await loadConfig({ dataDir: dir, env: {}, flags: { workers: '64' } })).workers).to.equal(64)
    for (const bad of ['65', '-1', '1.5', 'two', '']) {
      expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { workers: bad } }))).message).to.equal(`--workers: must be "auto" or an integer from 0 to 64 (got ${JSON.stringify(bad)})`)
    }
    await writeFile(join(dir, 'config.json'), JSON.stringify({ workers: 2.5 }))
    expect((await rejection(loadConfig({ dataDir: dir, env: {} }))).message).to.match(/"workers": must be "auto" or an integer from 0 to 64 \(got 2\.5\)$/)
  })

  it('replanMs: 30 s by default, 0 (never) or a period in ms from config.json, env or flag', async () => {
    expect((await loadConfig({ dataDir: dir, env: {} })).replanMs).to.equal(30_000)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ replanMs: 0 }))
    expect((await loadConfig({ dataDir: dir, env: {} })).replanMs).to.equal(0)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_REPLAN_MS: '5000' } })).replanMs).to.equal(5000)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_REPLAN_MS: '5000' }, flags: { replanMs: '1000' } })).replanMs).to.equal(1000)
    for (const bad of ['-1', '1.5', 'often']) {
      expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { replanMs: bad } }))).message).to.match(/^--replan-ms: /)
    }
  })

  it('receiptFlushMs: 60 s by default, from config.json, env or flag; 0 and non-integers refused', async () => {
    expect((await loadConfig({ dataDir: dir, env: {} })).receiptFlushMs).to.equal(60_000)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ receiptFlushMs: 500 }))
    expect((await loadConfig({ dataDir: dir, env: {} })).receiptFlushMs).to.equal(500)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_RECEIPT_FLUSH_MS: '2000' } })).receiptFlushMs).to.equal(2000)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_RECEIPT_FLUSH_MS: '2000' }, flags: { receiptFlushMs: '100' } })).receiptFlushMs).to.equal(100)
    for (const bad of ['0', '-1', '1.5', 'soon']) {
      expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { receiptFlushMs: bad } }))).message).to.match(/^--receipt-flush-ms: /)
    }
  })

  it('stepDeadlineFloorMs: 1 s by default, from config.json, env or flag; the step timeout stays the ceiling', async () => {
    const defaults = await loadConfig({ dataDir: dir, env: {} })
    expect(defaults.stepDeadlineFloorMs).to.equal(1000)
    expect(defaults.stepTimeoutMs).to.equal(10_000)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ stepDeadlineFloorMs: 2000 }))
    expect((await loadConfig({ dataDir: dir, env: {} })).stepDeadlineFloorMs).to.equal(2000)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_STEP_DEADLINE_FLOOR_MS: '3000' } })).stepDeadlineFloorMs).to.equal(3000)
    expect((await loadConfig({ dataDir: dir, env: { BLYD_STEP_DEADLINE_FLOOR_MS: '3000' }, flags: { stepDeadlineFloorMs: '500' } })).stepDeadlineFloorMs).to.equal(500)
    for (const bad of ['0', '1.5', 'soon']) {
      expect((await rejection(loadConfig({ dataDir: dir, env: {}, flags: { stepDeadlineFloorMs: bad } }))).message).to.match(/^--step-deadline-floor-ms: /)
    }
  })

  it('rejects a socket path too long for a Unix socket', async () => {
    const err = await rejection(loadConfig({ dataDir: dir, env: {}, flags: { ipcSocket: 'x'.repeat(200) } }))
    expect(err.message).to.include('too long')
  })
})
