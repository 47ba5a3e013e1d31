/**
 * The OpenAI-compatible HTTP API of a daemon that generates through a mesh:
 * three real daemons on 127.0.0.1. Node 1 imports the demo model (2 layers,
 * the real Qwen3 tokenizer) and serves no layers; nodes 2 and 3 get the
 * blocks over the network and serve layers [0, 1) and [1, 2). The official
 * `openai` client on node 1's listener gets its chat completions, streamed
 * or not, from a generation through both peers, equal to IPC `generate` on
 * node 1; node 1's /metrics shows a step latency series per stage, node 2's
 * the steps its stage served and the blocks it synced. Node 1's dashboard,
 * in a headless chromium, shows both spans and drops node 3's when it leaves
 * (last: node 3 stays down).
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ipcRequest, makeTempDir, removeDir, runJson } from '../daemon/helpers.ts'
import { startMeshNode, waitFor } from '../mesh/helpers.ts'
import { ARTIFACTS_DIR, launchChromium } from './browser.ts'
import { importModel, openaiClient, parsePrometheus, sampleValue, scrape, startHttpNode, writeDemo } from './helpers.ts'
import type { HttpNode } from './helpers.ts'
import type { MeshNode } from '../mesh/helpers.ts'
import type OpenAI from 'openai'
import type { Locator } from 'playwright-core'

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

  it('the dashboard in a headless chromium shows both peers\' spans, and updates when node 3 leaves; data is shown as text', async () => {
    const [, n2, n3] = nodes
    const browser = await launchChromium()
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
      const pageErrors: string[] = []
      page.on('pageerror', err => { pageErrors.push(err.message) })
      let navigations = 0
      page.on('framenavigated', frame => { navigations += frame === page.mainFrame() ? 1 : 0 })
      await page.goto(`${n1.url}/dashboard`)
      const spanRow = (peerId: string): Locator => page.locator(`section[data-section="swarm"] tr[data-peer="${peerId}"][data-model="${model}"]`)
      const connectedRow = (peerId: string): Locator => page.locator(`section[data-section="swarm"] tr[data-connected="${peerId}"]`)
      await page.locator(`section[data-section="node"] [data-field="peer-id"]:text-is("${n1.peerId}")`).waitFor({ timeout: 30_000 })
      await spanRow(n2.peerId).waitFor({ timeout: 30_000 })
      await spanRow(n3.peerId).waitFor({ timeout: 30_000 })
      // the layers each serves, as `peers` gives them
      expect(await spanRow(n2.peerId).locator('td').nth(1).textContent()).to.equal('0–1')
      expect(await spanRow(n3.peerId).locator('td').nth(1).textContent()).to.equal('1–2')
      expect(await connectedRow(n2.peerId).count()).to.equal(1)
      expect(await connectedRow(n3.peerId).count()).to.equal(1)
      // chain counts as chain.info says (the same store: the import wrote every block here)
      const chain = await ipcRequest(n1.daemon.socketPath, 'chain.info')
      expect(await page.locator('section[data-section="chain"] tr[data-chain="A"] td').nth(1).textContent()).to.equal(String(chain.counts.A))
      expect(await page.locator('#status').getAttribute('data-state')).to.equal('live')
      await page.screenshot({ path: join(ARTIFACTS_DIR, 'dashboard.png'), fullPage: true })

      // node 3 leaves (a clean stop: it withdraws its span): the same page, not reloaded, drops it
      await n3.daemon.kill('SIGTERM')
      await spanRow(n3.peerId).waitFor({ state: 'detached', timeout: 30_000 })
      await connectedRow(n3.peerId).waitFor({ state: 'detached', timeout: 30_000 })
      expect(await spanRow(n2.peerId).count()).to.equal(1)
      expect(await connectedRow(n2.peerId).count()).to.equal(1)
      expect(navigations).to.equal(1)
      expect(await page.locator('#status').getAttribute('data-state')).to.equal('live')
      await page.screenshot({ path: join(ARTIFACTS_DIR, 'dashboard-after-leave.png'), fullPage: true })
      expect(pageErrors).to.deep.equal([])

      // peer ids and model names are data: a snapshot carrying markup shows it as text, and runs nothing
      const snapshot = await (await fetch(`${n1.url}/v1/dashboard/snapshot`)).json() as any
      const evil = '<img src=x onerror="window.pwned=1">'
      snapshot.swarm.spans[0].peerId = evil
      snapshot.models[0].name = `<script>window.pwned=2</script>${evil}`
      snapshot.errors = { proposals: evil }
      // a training job (the shape status.learning.training and the snapshot's `training` give): its loss curve
      const losses = [5.5, 5.1, 4.8, 4.6, 4.5, 4.3]
      snapshot.training = [{ id: 1, model: null, dataset: evil, state: 'done', steps: 6, step: 6, losses, lossStride: 1, evalLosses: [{ step: 0, loss: 5.6 }, { step: 6, loss: 4.4 }], tokensPerSecond: 120, proposalId: null, error: null, queuedAt: Date.now(), endedAt: Date.now() }]
      const hostile = await browser.newPage()
      await hostile.route('**/v1/dashboard/events', async route => route.fulfill({ status: 200, contentType: 'text/event-stream', body: `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n` }))
      await hostile.goto(`${n1.url}/`)
      await hostile.locator(`section[data-section="swarm"] tr[data-peer="${evil.replace(/"/g, '\\"')}"]`).waitFor({ timeout: 20_000 })
      expect(await hostile.locator('section[data-section="models"]').textContent()).to.include(`<script>window.pwned=2</script>${evil}`)
      expect(await hostile.locator('section[data-section="proposals"] .error').textContent()).to.include(evil)
      expect(await hostile.locator('main img, main script').count()).to.equal(0)
      const job = hostile.locator('section[data-section="training"] tr[data-job="1"]')
      expect(await job.locator('td').nth(1).textContent()).to.equal(evil)
      const points = (await job.locator('svg.loss-curve polyline.train').getAttribute('points'))?.trim().split(/\s+/) ?? []
      expect(points).to.have.length(losses.length)
      // the curve falls: y grows downwards in SVG
      const ys = points.map(p => Number(p.split(',')[1]))
      expect(ys[ys.length - 1]).to.be.greaterThan(ys[0])
      expect(await job.locator('svg.loss-curve circle.eval').count()).to.equal(2)
      expect(await hostile.evaluate(() => (window as any).pwned)).to.equal(undefined)
    } finally {
      await browser.close()
    }
  })
})
