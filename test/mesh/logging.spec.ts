/**
 * The daemon's log with real `blyd` daemons on 127.0.0.1: what the net,
 * pipeline and mesh components and libp2p itself log reaches `blyd start`'s
 * stderr as one line each, at the level its call site chose, and
 * `--log-level` filters it. Three daemons: n1 at debug imports the tiny
 * model; n2 at warn serves it with test fault injection on (its stage
 * server and span server say so at error); n3 at the default level, info,
 * serves it too. Absences are checked on the whole of each stderr, after the
 * daemon exited.
 */
import { once } from 'node:events'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { startMeshNode, waitFor } from './helpers.ts'
import type { MeshNode } from './helpers.ts'

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARN|INFO|DEBUG|TRACE) (\S+)(?: (.*))?$/

/** Every line of a daemon's stderr, parsed; fails on a line that is not in the log format. */
function logLines (stderr: string): Array<{ level: string, component: string, text: string }> {
  return stderr.split('\n').filter(l => l !== '').map(line => {
    const m = LINE.exec(line)
    expect(m, `not a log line: ${line}`).to.not.equal(null)
    return { level: m?.[1] ?? '', component: m?.[2] ?? '', text: m?.[3] ?? '' }
  })
}

function levelsOf (stderr: string): Set<string> {
  return new Set(logLines(stderr).map(l => l.level))
}

describe('logging: every part reaches the daemon log at the level its call site chose', function () {
  this.timeout(120_000)
  let root: string
  const nodes: MeshNode[] = []

  async function start (name: string, args: string[], env: Record<string, string> = {}): Promise<MeshNode> {
    const node = await startMeshNode(root, name, args, env)
    nodes.push(node)
    return node
  }

  /** SIGTERM (a clean stop), then wait until its stderr is closed: the log is complete. */
  async function stop (node: MeshNode): Promise<string> {
    const closed = once(node.daemon.child, 'close')
    await node.daemon.kill('SIGTERM')
    await closed
    return node.daemon.stderr
  }

  before(async () => {
    root = await makeTempDir()
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('net, pipeline, mesh and libp2p lines reach stderr at their levels; --log-level filters them', async () => {
    const n1 = await start('n1', ['--log-level', 'debug'])
    const { modelId: model } = await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', n1.dir])
    const [n2, n3] = await Promise.all([
      start('n2', ['--log-level', 'warn', '--bootstrap', n1.addr, '--model', model, '--layers', '0-4'], { BLYD_TEST_STEP_DELAY_MS: '1' }),
      start('n3', ['--bootstrap', n1.addr, '--model', model, '--layers', '0-4'])
    ])

    for (const n of [n2, n3]) {
      await waitFor(`${n.name} to serve`, async () => (await ipcRequest(n.daemon.socketPath, 'status')).serving?.state === 'serving')
    }
    // n1's block exchange (net) logs each catch-up at debug
    await waitFor('n1 to log its syncs with n2 and n3', async () => [n2, n3].every(n => n1.daemon.stderr.includes(`DEBUG bly:net:block-sync synced with ${n.peerId}: `)))

    const [log1, log2, log3] = await Promise.all([n1, n2, n3].map(stop))

    // n1 at debug: its own components, net's debug lines, libp2p's own diagnostics; trace is below debug
    expect(log1).to.match(/^\S+ INFO bly:daemon daemon\.started pid=\d+ /m)
    expect(log1).to.match(/^\S+ INFO bly:daemon:ipc ipc\.listening socket=/m)
    expect(log1).to.match(/^\S+ DEBUG libp2p:\S+ /m)
    // libp2p's error channel (refused dials, streams closed early) is written at debug too
    expect(new Set(logLines(log1).filter(l => l.component.startsWith('libp2p')).map(l => l.level))).to.deep.equal(new Set(['DEBUG']))
    expect([...levelsOf(log1)]).to.not.include('TRACE')

    // n2 at warn: the pipeline's stage server and the mesh's span server report fault injection at error;
    // every info line (serve.started, daemon.started) and every debug line is filtered out
    expect(log2).to.match(/^\S+ ERROR bly:pipeline:stage-server FAULT INJECTION ON \(tests only\): \{ stepDelayMs: 1[,} ]/m)
    expect(log2).to.match(new RegExp(`^\\S+ ERROR bly:mesh:span-server serve\\.fault-injection model=${model} warning="test-only fault injection is ON" stepDelayMs=1$`, 'm'))
    expect(levelsOf(log2)).to.not.have.any.keys('INFO', 'DEBUG', 'TRACE')
    expect(log2).to.not.include('serve.started')

    // n3 at info: the mesh's span server at info, the daemon's start and stop; nothing at debug
    expect(log3).to.match(new RegExp(`^\\S+ INFO bly:mesh:span-server serve\\.started model=${model} start=0 end=4 workers=0 version=[0-9a-f]{64}$`, 'm'))
    expect(log3).to.match(/^\S+ INFO bly:daemon daemon\.stopped pid=\d+$/m)
    expect(levelsOf(log3)).to.not.have.any.keys('DEBUG', 'TRACE')
    expect(log3).to.not.include('synced with')
  })
})
