/**
 * The OpenAI-compatible HTTP API of a daemon that generates through a mesh:
 * three real daemons on 127.0.0.1. Node 1 imports the demo model (2 layers,
 * the real Qwen3 tokenizer) and serves no layers; nodes 2 and 3 get the
 * blocks over the network and serve layers [0, 1) and [1, 2). The official
 * `openai` client on node 1's listener gets its chat completions, streamed
 * or not, from a generation through both peers, equal to IPC `generate` on
 * node 1; node 1's /metrics shows a step latency series per stage, node 2's
 * the steps its stage served and the blocks it synced.
 */
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { startMeshNode, waitFor } from '../mesh/helpers.ts'
import { importModel, openaiClient, parsePrometheus, sampleValue, scrape, startHttpNode, writeDemo } from './helpers.ts'
import type { HttpNode } from './helpers.ts'
import type { MeshNode } from '../mesh/helpers.ts'
import type OpenAI from 'openai'

describe('http: the OpenAI-compatible API through a 3-daemon mesh', function () {
  this.timeout(120_000)
  let root: string
  let n1: HttpNode
  const nodes: MeshNode[] = []
  let model: string
  let client: OpenAI

  before(async () => {
    root = await makeTempDir()
    let checkpoint: string
    [n1, checkpoint] = await Promise.all([startHttpNode(root, 'n1'), writeDemo(root)])
    nodes.push(n1)
    model = await importModel(n1, checkpoint)
    const serve = ['--bootstrap', n1.addr, '--model', model]
    nodes.push(...await Promise.all([
      startMeshNode(root, 'n2', [...serve, '--layers', '0-1']),
      startMeshNode(root, 'n3', [...serve, '--layers', '1-2'])
    ]))
    const [, n2, n3] = nodes
    await waitFor('both spans to be served and announced', async () => {
      const { spans } = await ipcRequest(n1.daemon.socketPath, 'peers', { model })
      return spans.some((s: any) => s.peerId === n2.peerId && s.start === 0 && s.end === 1) && spans.some((s: any) => s.peerId === n3.peerId && s.start === 1 && s.end === 2)
    }, 60_000)
    client = openaiClient(n1.url, 'unused')
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('chat completions, streamed or not, run through both peers and equal IPC generate; /metrics shows each stage', async () => {
    const [, n2, n3] = nodes
    const messages = [{ role: 'user' as const, content: 'Where do the layers run?' }]
    const before = await scrape(n1.url)
    const reference = await ipcRequest(n1.daemon.socketPath, 'generate', { model, chat: messages, maxNewTokens: 6, temperature: 0 })
    expect(reference.via).to.equal('mesh')

    const res = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0 })
    const blyd = (res as any).blyd
    expect(blyd.via).to.equal('mesh')
    expect(blyd.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[n2.peerId, 0, 1], [n3.peerId, 1, 2]])
    expect(blyd.tokens).to.deep.equal(reference.tokens)
    expect(res.choices[0].message.content).to.equal(reference.text)
    expect(res.usage?.completion_tokens).to.equal(6)

    const stream = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let usage: any
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      usage = chunk.usage ?? usage
    }
    expect(text).to.equal(reference.text)
    expect(usage).to.include({ completion_tokens: 6, prompt_tokens: reference.promptTokens })

    // with one model on chain, `model` may be omitted
    const bare = await fetch(`${n1.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hello', max_tokens: 2, temperature: 0 }) })
    expect(bare.status).to.equal(200)
    const completion = await bare.json() as any
    expect(completion.model).to.equal(model)
    expect(completion.blyd.via).to.equal('mesh')

    // the CLI too: generate and model logits without --model (over IPC to node 1), the same tokens
    const [cli, logits] = await Promise.all([
      runJson(['generate', '--prompt', 'Hello', '--max-new-tokens', '2', '--temperature', '0', '--data-dir', n1.dir]),
      runJson(['model', 'logits', '--ids', '1,2', '--data-dir', n1.dir])
    ])
    expect(cli.tokens).to.deep.equal(completion.blyd.tokens)
    expect(logits.logits).to.have.length(2)

    const after = await scrape(n1.url)
    const grew = (name: string, labels: Record<string, string>): number => sampleValue(after.samples, name, labels) - sampleValue(before.samples, name, labels)
    // 5 generations: 6 + 6 + 6 + 2 + 2 tokens, each a step through each stage
    expect(grew('blyd_generations_total', { via: 'mesh' })).to.equal(5)
    expect(grew('blyd_generate_tokens_total', {})).to.equal(22)
    expect(grew('blyd_generate_step_seconds_count', { stage: '0-1' })).to.equal(22)
    expect(grew('blyd_generate_step_seconds_count', { stage: '1-2' })).to.equal(22)
    expect(sampleValue(after.samples, 'blyd_libp2p_connections')).to.be.at.least(2)
    // node 2 has no HTTP listener (off unless --http-listen): the same registry over IPC `metrics`
    expect((await ipcRequest(n2.daemon.socketPath, 'status')).http).to.equal(null)
    const { samples } = parsePrometheus((await ipcRequest(n2.daemon.socketPath, 'metrics')).text)
    expect(sampleValue(samples, 'blyd_stage_steps_total')).to.be.at.least(22)
    expect(sampleValue(samples, 'blyd_stage_sessions_opened_total')).to.be.at.least(5)
    expect(sampleValue(samples, 'blyd_sync_blocks_added_total') + sampleValue(samples, 'blyd_gossip_blocks_total', { result: 'accepted' })).to.be.at.least(1)
  })
})
