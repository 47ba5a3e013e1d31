/**
 * `npm start`: a four-node mesh on 127.0.0.1, end to end, in well under a
 * minute. It writes a small Qwen3 checkpoint with RANDOM weights (the text it
 * generates is meaningless; the point is the path it takes), starts four
 * `blyd` daemons as child processes in their own temp data dirs (OS-chosen
 * ports, addresses read from `blyd status --json`), imports the model on
 * node 1, lets nodes 2-4 sync it over the network and serve a third of the
 * layers each (--layers), waits until the live spans cover every layer, then
 * streams a generation from node 1 through all three stages and prints the
 * route, each stage's share of the time and tokens/s. Everything is stopped
 * and the temp dirs removed on exit or Ctrl-C.
 */
import { out, request, runDemo } from './lib/demo-mesh.ts'
import type { DemoMesh } from './lib/demo-mesh.ts'

const LAYERS = 6
const SPANS = ['0-2', '2-4', '4-6']
const DEMO_MODEL = ['--layers', String(LAYERS), '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--head-dim', '16', '--intermediate', '128', '--seed', '7']
const PROMPT = 'The mesh carries every layer from peer to peer'
const MAX_NEW_TOKENS = 48

async function demo (mesh: DemoMesh): Promise<void> {
  const t0 = Date.now()
  await mesh.open('blyd-demo-')
  const ckpt = mesh.path('checkpoint')
  await mesh.blyd(['model', 'init-demo', ckpt, ...DEMO_MODEL, '--json'])
  out(`wrote a ${LAYERS}-layer Qwen3 checkpoint with RANDOM weights (its text is meaningless) to ${ckpt}\n`)

  const n1 = await mesh.start('node1', [])
  const imported = JSON.parse(await mesh.blyd(['model', 'import', ckpt, '--data-dir', n1.dir, '--json']))
  const model: string = imported.modelId
  out(`node1 imported model ${model.slice(0, 16)}... as ${imported.blocks} blocks\n`)

  await Promise.all(SPANS.map(async (span, i) => mesh.start(`node${i + 2}`, ['--bootstrap', n1.addr, '--model', model, '--layers', span])))
  out('nodes 2-4 sync the blocks over the network and serve layers ' + SPANS.map((s, i) => `${s} (node${i + 2})`).join(', ') + '\n')

  await mesh.waitCovered(n1, model, LAYERS)
  out(`every layer is served (${((Date.now() - t0) / 1000).toFixed(1)} s since start); generating from node1 through the mesh:\n\n`)

  const result = await request(n1.socket, 'generate', { model, prompt: PROMPT, maxNewTokens: MAX_NEW_TOKENS, temperature: 0.8, seed: 1 }, {
    onStream: p => { out(typeof p.text === 'string' ? p.text : `${String(p.token)} `) }
  })
  out('\n\n')
  const names = new Map(mesh.nodes.map(n => [n.peerId, n.name]))
  const route = result.route ?? []
  const total = route.reduce((a, h) => a + (h.ms ?? 0), 0) + (result.localMs ?? 0)
  out(`route (${result.via ?? 'local'}):\n`)
  for (const hop of route) {
    const share = total > 0 ? (100 * (hop.ms ?? 0) / total).toFixed(1) : '0'
    out(`  layers [${hop.start}, ${hop.end})  ${names.get(hop.peerId) ?? '?'} ${hop.peerId}  ${(hop.ms ?? 0).toFixed(1)} ms  ${share}% of the time\n`)
  }
  const localShare = total > 0 ? (100 * (result.localMs ?? 0) / total).toFixed(1) : '0'
  out(`  embedding + head on node1: ${(result.localMs ?? 0).toFixed(1)} ms  ${localShare}%\n`)
  out(`${result.tokens.length} tokens (${result.promptTokens} prompt tokens), ${result.tokensPerSecond.toFixed(1)} tokens/s, backend ${result.backend}, ${((Date.now() - t0) / 1000).toFixed(1)} s in all\n`)
}

await runDemo(demo)
