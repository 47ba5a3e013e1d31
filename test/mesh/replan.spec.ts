/**
 * The periodic re-plan of `--layers auto` with real `blyd` daemons on
 * 127.0.0.1. Node A imports the 4-layer fixture and serves nothing. B1 and B2
 * serve layers [0, 2) (fixed). C and D run `--layers auto --replan-ms 1000`
 * with memory for 2 layers only: C joins where coverage needs it, [2, 4);
 * D joins where the bottleneck gains most, [2, 4) too (layers 2-3 have one
 * holder, 0-1 two). Both B nodes are killed (SIGKILL, short record lifetime):
 * once their records lapse, exactly one of C and D moves to [0, 2) (the
 * planner's coverage gain; ties go to the first in peer-id order), the other
 * stays on [2, 4), and a greedy generation from A through them equals the
 * fixture's reference tokens.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { startMeshNode, waitFor } from './helpers.ts'
import type { MeshNode } from './helpers.ts'
import type { Expected } from '../model/fixtures.ts'

/** short record lifetime: the killed nodes' spans lapse within it */
const RECORD_TTL_MS = 3000
/** each decoder layer of the fixture is 223072 payload bytes: this holds 2 layers, not 3 */
const MEMORY_BYTES = 500_000

type Node = MeshNode

describe('mesh: --layers auto re-plans and moves into the hole a departure left', function () {
  this.timeout(180_000)
  let root: string
  const nodes: Node[] = []
  let expected: Expected

  async function start (name: string, args: string[] = []): Promise<Node> {
    const node = await startMeshNode(root, name, args)
    nodes.push(node)
    return node
  }

  async function serving (node: Node): Promise<any> {
    return (await ipcRequest(node.daemon.socketPath, 'status')).serving
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('one of two auto nodes on [2, 4) moves to [0, 2) when its holders die; generation through them equals the reference', async () => {
    const a = await start('a')
    const model = (await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', a.dir])).modelId
    const common = ['--bootstrap', a.addr, '--model', model, '--record-ttl-ms', String(RECORD_TTL_MS)]
    const spansOn = async (node: Node): Promise<string> => {
      const { spans } = await ipcRequest(node.daemon.socketPath, 'peers', { model })
      return spans.map((s: any) => `${s.peerId}:${s.start}-${s.end}`).sort().join(' ')
    }
    const expectSpans = async (node: Node, want: Array<[Node, number, number]>): Promise<boolean> =>
      await spansOn(node) === want.map(([n, s, e]) => `${n.peerId}:${s}-${e}`).sort().join(' ')

    const [b1, b2] = await Promise.all([start('b1', [...common, '--layers', '0-2']), start('b2', [...common, '--layers', '0-2'])])
    await waitFor('B1 and B2 to serve [0, 2)', async () => expectSpans(a, [[b1, 0, 2], [b2, 0, 2]]), 60_000)

    const auto = [...common, '--layers', 'auto', '--replan-ms', '1000', '--memory-bytes', String(MEMORY_BYTES)]
    const c = await start('c', auto)
    await waitFor('C to join on [2, 4)', async () => expectSpans(a, [[b1, 0, 2], [b2, 0, 2], [c, 2, 4]]), 60_000)
    const d = await start('d', auto)
    await waitFor('D to join on [2, 4)', async () => expectSpans(a, [[b1, 0, 2], [b2, 0, 2], [c, 2, 4], [d, 2, 4]]), 60_000)
    // balanced: both re-plan, and neither moves
    await waitFor('C and D to re-plan', async () => {
      const [sc, sd] = await Promise.all([serving(c), serving(d)])
      return sc.replan != null && sd.replan != null
    })
    for (const n of [c, d]) {
      const s = await serving(n)
      expect(s).to.include({ state: 'serving', start: 2, end: 4 })
      expect(s.replan.moved).to.equal(false)
      expect(s.lastMove).to.equal(undefined)
    }

    await Promise.all([b1.daemon.kill('SIGKILL'), b2.daemon.kill('SIGKILL')])
    const [mover, stayer] = await waitFor('one of C and D to move to [0, 2)', async () => {
      const [sc, sd] = await Promise.all([serving(c), serving(d)])
      if (sc.lastMove != null && sc.start === 0) {
        return [c, d]
      }
      if (sd.lastMove != null && sd.start === 0) {
        return [d, c]
      }
      return undefined
    }, 60_000)
    const moved = await serving(mover)
    expect(moved).to.include({ state: 'serving', start: 0, end: 2 })
    expect(moved.lastMove).to.deep.include({ moved: true, reason: 'coverage', gain: null, from: { start: 2, end: 4 }, to: { start: 0, end: 2 } })
    expect(mover.daemon.stderr).to.include('serve.moved')

    // every node sees the new spans: the mover on [0, 2), the other still on [2, 4)
    for (const n of [a, c, d]) {
      await waitFor(`${n.dir} to see the new spans`, async () => expectSpans(n, [[mover, 0, 2], [stayer, 2, 4]]), 60_000)
    }
    const kept = await serving(stayer)
    expect(kept).to.include({ state: 'serving', start: 2, end: 4 })
    expect(kept.lastMove).to.equal(undefined)
    expect(kept.replan.moved).to.equal(false)

    const { prompt, tokens } = expected.greedy
    const gen = await runJson(['generate', '--model', model, '--prompt-ids', prompt.join(','), '--temperature', '0', '--max-new-tokens', String(tokens.length), '--data-dir', a.dir])
    expect(gen.tokens).to.deep.equal(tokens)
    expect(gen.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[mover.peerId, 0, 2], [stayer.peerId, 2, 4]])

    // the swarm is balanced again: a few more re-plans later, nobody has moved back
    const seen = moved.replan?.at ?? 0
    await waitFor('the mover to re-plan again', async () => ((await serving(mover)).replan?.at ?? 0) > seen)
    expect(await serving(mover)).to.include({ start: 0, end: 2 })
    expect((await serving(stayer)).lastMove).to.equal(undefined)
  })
})
