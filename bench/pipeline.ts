/**
 * Decode tokens/s of a 4-stage loopback mesh against the same model in one
 * process, same run. Writes a random-weight demo checkpoint, starts 4 stage
 * server PROCESSES (each holding a quarter of the decoder layers, weights
 * read from the checkpoint file: in production they come from the chain
 * loader), and drives both with generate() (greedy): locally over a complete
 * LayerRange, remotely with the pipeline client (the client holds the
 * embedding, final norm and head). The greedy tokens of both must be equal.
 * Usage: npm run bench -- pipeline [--layers 8] [--hidden 1024] [--tokens 32] [--prompt 16] [--reps 2] [--stage-threads N]
 * The last line printed is one JSON object.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { selectBackend } from '../src/model/backend.ts'
import { writeDemoCheckpoint } from '../src/model/demo-checkpoint.ts'
import { generate } from '../src/model/generate.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { SafetensorsCheckpoint } from '../src/model/safetensors/checkpoint.ts'
import { createBlyLibp2p } from '../src/net/libp2p-node.ts'
import { createPipelineClient, generateThroughPipeline } from '../src/pipeline/pipeline-client.ts'
import { createStageServer } from '../src/pipeline/stage-server.ts'
import type { WeightSource } from '../src/model/weight-source.ts'
import type { ChildProcess } from 'node:child_process'

const MODEL_ID = 'pipeline-bench-demo'
const STAGES = 4

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

function argText (name: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : ''
}

function out (line: string): void {
  process.stdout.write(line + '\n')
}

/** The checkpoint file as a weight source (bench only). */
async function checkpointSource (dir: string): Promise<{ source: WeightSource, close(): Promise<void> }> {
  const ck = await SafetensorsCheckpoint.open(dir)
  return {
    source: { label: dir, get: async (name) => ck.has(name) ? ck.read(name) : undefined },
    close: async () => { await ck.close() }
  }
}

async function loadRange (dir: string, init: { start: number, end: number, embedding?: boolean, head?: boolean }): Promise<LayerRange> {
  const config = parseQwen3Config(await readFile(join(dir, 'config.json'), 'utf8'))
  const ck = await checkpointSource(dir)
  try {
    return await LayerRange.load(config, ck.source, init)
  } finally {
    await ck.close()
  }
}

// ---------------------------------------------------------------- stage process

async function stage (): Promise<void> {
  const threads = arg('threads', 0)
  await selectBackend('auto', threads > 0 ? { threads } : {})
  const layers = await loadRange(argText('dir'), { start: arg('start', 0), end: arg('end', 0) })
  const node = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const server = createStageServer({ libp2p: node }, { modelId: MODEL_ID, layers })
  await server.start()
  out(JSON.stringify({ peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), start: layers.start, end: layers.end }))
  const shutdown = async (): Promise<void> => {
    await server.stop()
    await node.stop()
    layers.dispose()
    process.exit(0)
  }
  process.stdin.resume()
  process.stdin.on('end', () => { void shutdown() })
}

// ---------------------------------------------------------------- driver

interface Run { tokens: number[], prefillMs: number, decodeMs: number }

async function timeGeneration (gen: AsyncGenerator<{ id: number }>): Promise<Run> {
  const t0 = performance.now()
  let first = 0
  const tokens: number[] = []
  for await (const t of gen) {
    if (tokens.length === 0) {
      first = performance.now()
    }
    tokens.push(t.id)
  }
  const end = performance.now()
  return { tokens, prefillMs: first - t0, decodeMs: end - first }
}

async function startStageProcess (dir: string, start: number, end: number): Promise<{ child: ChildProcess, info: { peerId: string, multiaddrs: string[], start: number, end: number } }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--stage', '--dir', dir, '--start', String(start), '--end', String(end), '--threads', String(arg('stage-threads', 0))], { stdio: ['pipe', 'pipe', 'inherit'] })
  const info = await new Promise<{ peerId: string, multiaddrs: string[], start: number, end: number }>((resolve, reject) => {
    let text = ''
    child.stdout?.on('data', (d: Buffer) => {
      text += d.toString()
      const nl = text.indexOf('\n')
      if (nl >= 0) {
        resolve(JSON.parse(text.slice(0, nl)))
      }
    })
    child.once('exit', (code) => { reject(new Error(`stage process exited with ${code}`)) })
  })
  return { child, info }
}

async function main (): Promise<void> {
  const layers = arg('layers', 8)
  const hidden = arg('hidden', 1024)
  const newTokens = arg('tokens', 32)
  const promptLength = arg('prompt', 16)
  const reps = arg('reps', 2)
  if (layers % STAGES !== 0) {
    throw new Error(`--layers must be a multiple of ${STAGES}`)
  }
  const backend = await selectBackend('auto')
  const dir = await mkdtemp(join(tmpdir(), 'bly-pipeline-bench-'))
  const children: ChildProcess[] = []
  const killAll = (): void => {
    for (const c of children) {
      c.kill('SIGKILL')
    }
  }
  process.on('exit', killAll)
  try {
    const config = await writeDemoCheckpoint(dir, {
      layers,
      hidden,
      heads: hidden / 64,
      kvHeads: hidden / 128,
      headDim: 64,
      intermediate: hidden * 3,
      vocab: 8192,
      dtype: 'F32',
      tokenizer: false,
      tieWordEmbeddings: false
    })
    out(`pipeline bench: demo Qwen3 ${layers} layers, hidden ${hidden}, intermediate ${hidden * 3}, vocab 8192, f32; ${STAGES} stage processes on 127.0.0.1; backend ${backend.name}; prompt ${promptLength}, ${newTokens} new tokens, ${reps} reps`)
    const per = layers / STAGES
    const stages = await Promise.all(Array.from({ length: STAGES }, async (_, i) => {
      const s = await startStageProcess(dir, i * per, (i + 1) * per)
      children.push(s.child)
      return s
    }))
    const full = await loadRange(dir, { start: 0, end: layers, embedding: true, head: true })
    const local = await loadRange(dir, { start: 0, end: 0, embedding: true, head: true })
    const node = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const client = createPipelineClient({
      libp2p: node,
      modelId: MODEL_ID,
      local,
      route: stages.map(s => ({ peerId: s.info.peerId, multiaddrs: s.info.multiaddrs, start: s.info.start, end: s.info.end }))
    })
    const prompt = Array.from({ length: promptLength }, (_, i) => (i * 37 + 11) % config.vocabSize)
    const options = { maxNewTokens: newTokens }
    // warm-up: kernels, connections, stage caches
    await timeGeneration(generate(full, prompt, { maxNewTokens: 2 }))
    await timeGeneration(generateThroughPipeline(client, prompt, { maxNewTokens: 2 }))
    const single: Run[] = []
    const mesh: Run[] = []
    for (let r = 0; r < reps; r++) {
      single.push(await timeGeneration(generate(full, prompt, options)))
      mesh.push(await timeGeneration(generateThroughPipeline(client, prompt, options)))
    }
    const best = (runs: Run[]): Run => runs.reduce((a, b) => a.decodeMs <= b.decodeMs ? a : b)
    const s = best(single)
    const m = best(mesh)
    // the first token comes from the prefill: decode steps are the other tokens
    const tps = (run: Run): number => (run.tokens.length - 1) / (run.decodeMs / 1000)
    const singleTps = tps(s)
    const meshTps = tps(m)
    const perTokenOverheadMs = m.decodeMs / (m.tokens.length - 1) - s.decodeMs / (s.tokens.length - 1)
    const tokensEqual = single.concat(mesh).every(run => run.tokens.join() === s.tokens.join())
    out(`single process  ${singleTps.toFixed(2).padStart(7)} tok/s   prefill ${s.prefillMs.toFixed(0)} ms`)
    out(`4-stage mesh    ${meshTps.toFixed(2).padStart(7)} tok/s   prefill ${m.prefillMs.toFixed(0)} ms   (+${perTokenOverheadMs.toFixed(2)} ms per token, ${(perTokenOverheadMs / STAGES).toFixed(2)} ms per hop)`)
    out(`greedy tokens equal: ${tokensEqual}`)
    await node.stop()
    full.dispose()
    local.dispose()
    out(JSON.stringify({
      bench: 'pipeline',
      backend: backend.name,
      cpus: cpus().length,
      loadAverage: loadavg()[0],
      model: { layers, hidden, intermediate: hidden * 3, vocab: 8192, dtype: 'F32' },
      stages: STAGES,
      promptTokens: promptLength,
      newTokens,
      reps,
      singleTokensPerSecond: Math.round(singleTps * 100) / 100,
      meshTokensPerSecond: Math.round(meshTps * 100) / 100,
      ratio: Math.round(meshTps / singleTps * 1000) / 1000,
      target: 0.8,
      met: meshTps / singleTps >= 0.8,
      singlePrefillMs: Math.round(s.prefillMs),
      meshPrefillMs: Math.round(m.prefillMs),
      perTokenOverheadMs: Math.round(perTokenOverheadMs * 100) / 100,
      perHopOverheadMs: Math.round(perTokenOverheadMs / STAGES * 100) / 100,
      tokensEqual
    }))
  } finally {
    for (const c of children) {
      c.stdin?.end()
    }
    await new Promise(resolve => setTimeout(resolve, 200))
    killAll()
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv.includes('--stage')) {
  await stage()
} else {
  await main()
}
