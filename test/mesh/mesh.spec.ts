/**
 * Acceptance tests of the mesh with real `blyd` daemons as child processes on
 * 127.0.0.1: node 1 imports the tiny fixture, the others get every block over
 * the network, two nodes serve half of the layers each, a greedy generation
 * through them (one stage on webgpu, one on wasm) equals the reference, a late joiner catches up, a restarted
 * node redials its peers, and a killed node's span record expires from
 * `blyd peers`.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runCli, runJson } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { WEBGPU_INSTALL_HINT } from '../model/require-webgpu.ts'
import { startMeshNode, waitFor } from './helpers.ts'
import type { MeshNode } from './helpers.ts'
import type { Expected } from '../model/fixtures.ts'

/** short record lifetime: a killed node's span must vanish within it */
const RECORD_TTL_MS = 3000

type Node = MeshNode

describe('mesh: daemons on 127.0.0.1', function () {
  this.timeout(120_000)
  let root: string
  const nodes: Node[] = []
  let model: string
  let expected: Expected

  async function start (name: string, args: string[] = []): Promise<Node> {
    const node = await startMeshNode(root, name, args)
    nodes.push(node)
    return node
  }

  async function chainInfo (node: Node): Promise<any> {
    return ipcRequest(node.daemon.socketPath, 'chain.info')
  }

  async function spans (node: Node): Promise<any[]> {
    return (await ipcRequest(node.daemon.socketPath, 'peers', { model })).spans
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'expected.json'), 'utf8'))
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('syncs every block to every node, splits the layers over two peers, and generates the reference tokens through them', async () => {
    const n1 = await start('n1')
    const imported = await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', n1.dir])
    model = imported.modelId
    // node 2 runs its span on the GPU backend (webgpu: the software Vulkan adapter without a GPU, .ci/run
    // installs it; no skip), node 3 on wasm with 2 tensor-parallel worker threads; the two start side by side
    const [n2, n3] = await Promise.all([
      start('n2', ['--bootstrap', n1.addr, '--model', model, '--layers', '0-2', '--record-ttl-ms', String(RECORD_TTL_MS), '--backend', 'webgpu']).catch(err => {
        throw new Error(`${WEBGPU_INSTALL_HINT}: ${String(err?.message ?? err)}`)
      }),
      start('n3', ['--bootstrap', n1.addr, '--model', model, '--layers', '2-4', '--record-ttl-ms', String(RECORD_TTL_MS), '--backend', 'wasm', '--workers', '2'])
    ])
    nodes.splice(1, 2, n2, n3) // the later cases address them by position, whichever came up first

    // status: identity and dialable addresses
    const status = await runJson(['status', '--data-dir', n3.dir])
    expect(status.peerId).to.equal(n3.peerId)
    expect(status.addrs).to.be.an('array').that.is.not.empty()
    for (const addr of status.addrs) {
      expect(addr).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
      expect(addr.endsWith(`/p2p/${n3.peerId}`)).to.equal(true)
    }

    // every block reaches nodes 2 and 3 over the network
    const reference = await chainInfo(n1)
    expect(reference.counts.total).to.equal(imported.blocks)
    await waitFor('nodes 2 and 3 to hold the same blocks and tips as node 1', async () => {
      const infos = await Promise.all([n2, n3].map(chainInfo))
      return infos.every(i => JSON.stringify(i) === JSON.stringify(reference))
    })
    // read-only queries, one per daemon: side by side
    for (const info of await Promise.all([n2, n3].map(async n => runJson(['chain', 'info', '--data-dir', n.dir])))) {
      expect(info).to.deep.equal(reference)
    }

    // both spans live, then a greedy generation on node 3 goes through both
    await waitFor('both spans to be served and announced', async () => {
      const live = await spans(n3)
      return live.some(s => s.peerId === n2.peerId && s.start === 0 && s.end === 2) && live.some(s => s.peerId === n3.peerId && s.start === 2 && s.end === 4)
    })
    const [n2Status, n3Status] = await Promise.all([n2, n3].map(async n => runJson(['status', '--data-dir', n.dir])))
    expect(n2Status.serving).to.include({ model, state: 'serving', start: 0, end: 2, workers: 0 })
    // the webgpu stage names its adapter in status and in its node record (peers, plan)
    expect(n2Status.backend).to.equal('webgpu')
    expect(n2Status.inference.adapter.vendor).to.be.a('string').and.not.equal('')
    expect(n3Status.backend).to.equal('wasm')
    const n2Span = (await spans(n1)).find(s => s.peerId === n2.peerId)
    expect(n2Span).to.include({ backend: 'webgpu' })
    expect(n2Span.adapter).to.be.a('string').and.include(n2Status.inference.adapter.vendor)
    expect(n3Status.serving).to.include({ state: 'serving', start: 2, end: 4, workers: 2 })
    expect(n3Status.workers).to.include({ setting: 2, serving: 2 })

    const { prompt, tokens } = expected.greedy
    const args = ['generate', '--model', model, '--prompt-ids', prompt.join(','), '--temperature', '0', '--max-new-tokens', String(tokens.length)]
    for (const n of [n3, n1]) {
      const gen = await runJson([...args, '--data-dir', n.dir])
      expect(gen.tokens, `generated on ${n.dir}`).to.deep.equal(tokens)
      expect(gen.via).to.equal('mesh')
      expect(gen.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[n2.peerId, 0, 2], [n3.peerId, 2, 4]])
      expect(new Set(gen.route.map((h: any) => h.peerId)).size).to.be.above(1)
      expect(gen.route.map((h: any) => h.self)).to.deep.equal([false, n === n3])
    }

    // text mode streams the token ids
    const text = await runCli([...args, '--data-dir', n1.dir])
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stdout.trim().split(/\s+/).map(Number)).to.deep.equal(tokens)

    // blyd plan: coverage per layer from the live spans, the bottleneck, and what the planner proposes
    // (read-only queries to two daemons: the plan and node 3's model view, side by side)
    const [plan, show] = await Promise.all([
      runJson(['plan', '--model', model, '--json', '--data-dir', n1.dir]),
      runJson(['model', 'show', model, '--data-dir', n3.dir])
    ])
    expect(plan.model).to.equal(model)
    expect(plan.layers).to.equal(4)
    expect(plan.coverage.map((c: any) => c.holders)).to.deep.equal([[n2.peerId], [n2.peerId], [n3.peerId], [n3.peerId]])
    expect(plan.current.uncoveredLayers).to.deep.equal([])
    expect(plan.current.minHolders).to.equal(1)
    expect(plan.coverage[plan.current.bottleneckLayer].tokensPerSecond).to.equal(Math.min(...plan.coverage.map((c: any) => c.tokensPerSecond)))
    expect(plan.proposed.metrics.uncoveredLayers).to.deep.equal([])
    expect(plan.moves.filter((m: any) => m.reason === 'leave')).to.deep.equal([])
    expect(plan.nodes.find((n: any) => n.peerId === n2.peerId)).to.include({ backend: 'webgpu', adapter: n2Span.adapter })

    // a node without --full stores the payloads it serves plus the embedding and head, not the others
    expect(show.unitBlocks.map((u: any) => u.stored)).to.deep.equal([true, false, false, true, true, true])
  })

  it('a late joiner gets every block over the network', async () => {
    const [n1, n2] = nodes
    const n4 = await start('n4', ['--bootstrap', n2.addr, '--full'])
    const reference = await chainInfo(n1)
    await waitFor('the late joiner to hold every block', async () => JSON.stringify(await chainInfo(n4)) === JSON.stringify(reference))
    expect(await runJson(['chain', 'info', '--data-dir', n4.dir])).to.deep.equal(reference)
    // --full: every payload, so it could run the whole model itself
    await waitFor('the late joiner to store every payload', async () => (await runJson(['model', 'show', model, '--data-dir', n4.dir])).complete === true)
  })

  it('a restarted node redials the peers it knew, with no bootstrap list', async () => {
    const n4 = nodes[3]
    await n4.daemon.kill('SIGTERM')
    const again = await start('n4')
    expect(again.peerId).to.equal(n4.peerId)
    const known = new Set(nodes.slice(0, 3).map(n => n.peerId))
    await waitFor('the restarted node to reconnect', async () => {
      const net = await ipcRequest(again.daemon.socketPath, 'net.status')
      return net.connections.some((c: any) => known.has(c.peerId))
    })
  })

  it('the span of a killed node (no withdrawal) disappears from blyd peers once its record expires', async () => {
    const [, n2, n3] = nodes
    const before = await runJson(['peers', '--data-dir', n3.dir])
    const seen = before.spans.find((s: any) => s.peerId === n2.peerId)
    expect(seen, 'node 2 listed before the kill').to.not.equal(undefined)
    expect(seen).to.include({ model, start: 0, end: 2, source: 'direct' })
    expect(seen.rttMs).to.be.a('number')

    await n2.daemon.kill('SIGKILL')
    const killedAt = Date.now()
    let lastExpiry = seen.expiresAt
    await waitFor('node 2 to vanish from the peers of node 3', async () => {
      const s = (await spans(n3)).find(s => s.peerId === n2.peerId)
      if (s != null) {
        lastExpiry = s.expiresAt
      }
      return s == null
    }, RECORD_TTL_MS * 5)
    // the last record anyone saw was signed before the kill: it lapsed, nobody withdrew it
    expect(lastExpiry).to.be.at.most(killedAt + RECORD_TTL_MS)
    const after = await runJson(['peers', '--data-dir', n3.dir])
    expect(after.spans.map((s: any) => s.peerId)).to.deep.equal([n3.peerId])

    // layers 0 and 1 have no holder left: generation says so
    const gen = await runCli(['generate', '--model', model, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--data-dir', n3.dir])
    expect(gen.code).to.not.equal(0)
    expect(gen.stderr).to.include('no live span holds layers 0, 1')
  })
})
