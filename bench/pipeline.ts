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
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { selectBackend } from '../src/model/backend.ts'
import { writeDemoCheckpoint } from '../src/model/demo-checkpoint.ts'
import { generate } from '../src/model/generation/generate.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { SafetensorsCheckpoint } from '../src/model/safetensors/checkpoint.ts'
import { createBlyLibp2p } from '../src/net/libp2p-node.ts'
import { createPipelineClient } from '../src/pipeline/pipeline-client.ts'
import { createStageServer } from '../src/pipeline/stage-server.ts'
import { silentLogger } from '../src/protocols/logger.ts'
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

/** Linux: [ns on a cpu, ns waiting on a run queue] of the calling thread; zeros elsewhere. */
function threadSchedStat (): [number, number] {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number)
    return [run, wait]
  } catch {
    return [0, 0]
  }
}

/**
 * What a stage process has spent so far, read when the bench asks (before and
 * after its probe, so per-step figures are deltas over many steps): the main
 * thread's cpu time (the layers and the protocol work around them), the other
 * threads' (V8's GC and compiler workers, libuv), the main thread's run-queue
 * wait, and full GCs (count, main-thread pause). Whole-window deltas on
 * purpose: a thread's cpu time is only brought up to date at scheduler ticks
 * (4 ms at HZ=250), so timing one step that starts right after a sleep
 * under-counts it by ~2 ms on average. Counters only; the steps are unchanged.
 */
function stageCounters (): () => { cpuMs: number, otherCpuMs: number, runQueueMs: number, fullGcs: number, fullGcMs: number } {
  const gc = { fullGcs: 0, fullGcMs: 0 }
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR || kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) {
        gc.fullGcs++
        gc.fullGcMs += e.duration
      }
    }
  }).observe({ entryTypes: ['gc'] })
  return () => {
    const main = process.threadCpuUsage()
    const all = process.cpuUsage()
    const cpuMs = (main.user + main.system) / 1000
    return { cpuMs, otherCpuMs: (all.user + all.system) / 1000 - cpuMs, runQueueMs: threadSchedStat()[1] / 1e6, ...gc }
  }
}

async function stage (): Promise<void> {
  const threads = arg('threads', 0)
  await selectBackend('auto', threads > 0 ? { threads } : {})
  const layers = await loadRange(argText('dir'), { start: arg('start', 0), end: arg('end', 0) })
  const counters = stageCounters()
  const node = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const server = createStageServer({ libp2p: node, logger: silentLogger() }, { modelId: MODEL_ID, layers })
  await server.start()
  out(JSON.stringify({ peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), start: layers.start, end: layers.end }))
  // any line on stdin: answer what this stage spent per one-position (decode) step so far
  process.stdin.on('data', () => {
    const st = server.stats
    out(JSON.stringify({ decodeSteps: st.decodeSteps, decodeMs: st.decodeMs, steps: st.steps, ...counters() }))
  })
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

interface StageProcess {
  child: ChildProcess
  info: { peerId: string, multiaddrs: string[], start: number, end: number }
  /** decode steps computed so far and their milliseconds, in the stage process */
  stats(): Promise<{ decodeSteps: number, decodeMs: number, steps: number, cpuMs: number, runQueueMs: number, otherCpuMs: number, fullGcs: number, fullGcMs: number }>
}

async function startStageProcess (dir: string, start: number, end: number): Promise<StageProcess> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--stage', '--dir', dir, '--start', String(start), '--end', String(end), '--threads', String(arg('stage-threads', 0))], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = stdoutLines(child)
  const info = JSON.parse(await lines.next())
  return {
    child,
    info,
    stats: async () => {
      child.stdin?.write('stats\n')
      return JSON.parse(await lines.next())
    }
  }
}

/** The child's stdout as lines, taken one at a time; rejects when the child exits first. */
function stdoutLines (child: ChildProcess): { next(): Promise<string> } {
  let text = ''
  const waiting: Array<{ resolve(line: string): void, reject(err: Error): void }> = []
  const ready: string[] = []
  child.stdout?.on('data', (d: Buffer) => {
    text += d.toString()
    let nl = text.indexOf('\n')
    while (nl >= 0) {
      const line = text.slice(0, nl)
      text = text.slice(nl + 1)
      const w = waiting.shift()
      if (w != null) {
        w.resolve(line)
      } else {
        ready.push(line)
      }
      nl = text.indexOf('\n')
    }
  })
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) {
      w.reject(new Error(`stage process exited with ${code}`))
    }
  })
  return {
    next: async () => {
      const line = ready.shift()
      if (line != null) {
        return line
      }
      return new Promise((resolve, reject) => { waiting.push({ resolve, reject }) })
    }
  }
}

/**
 * Per decode step, ms `ranges` take in this process, in pipeline order on the
 * inputs the stages saw, each in a fresh session; with `sleepMs`, range i
 * first sleeps sleepMs[i] before each step, as a stage idles between its turns.
 */
async function timeRangesInProcess (ranges: LayerRange[], inputs: ReadonlyArray<ReadonlyArray<{ data: Float32Array }>>, tokens: number, sleepMs: number[] | null): Promise<number[]> {
  const ms: number[] = ranges.map(() => 0)
  const kvs = ranges.map(r => r.createSession())
  try {
    for (const [i, r] of ranges.entries()) {
      await r.forwardData(kvs[i], inputs[i][0].data)
    }
    for (let k = 1; k <= tokens; k++) {
      for (const [i, r] of ranges.entries()) {
        if (sleepMs != null) {
          await new Promise(resolve => setTimeout(resolve, sleepMs[i]))
        }
        const t0 = performance.now()
        await r.forwardData(kvs[i], inputs[i][k].data)
        ms[i] += (performance.now() - t0) / tokens
      }
    }
  } finally {
    kvs.forEach(kv => { kv.dispose() })
  }
  return ms
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
    await timeGeneration(generate(client, prompt, { maxNewTokens: 2 }))
    const single: Run[] = []
    const mesh: Run[] = []
    for (let r = 0; r < reps; r++) {
      single.push(await timeGeneration(generate(full, prompt, options)))
      mesh.push(await timeGeneration(generate(client, prompt, options)))
    }
    // where a hop's time goes: per decode step, each hop as the client sees it (FORWARD sent ->
    // RESULT decoded) against the same layers run in this process on the same inputs
    const probe = client.createSession()
    await probe.forward(prompt)
    const stageBefore = [...probe.stats.stageMs]
    const localBefore = probe.stats.localMs
    const remoteBefore = await Promise.all(stages.map(async st => st.stats()))
    const probeTokens = Math.min(newTokens, 16)
    const probeStart = performance.now()
    for (let i = 0; i < probeTokens; i++) {
      await probe.forward([(i * 53 + 7) % config.vocabSize])
    }
    const probeStepMs = (performance.now() - probeStart) / probeTokens
    const clientLocalMs = (probe.stats.localMs - localBefore) / probeTokens
    const hopMs = probe.stats.stageMs.map((ms, i) => (ms - stageBefore[i]) / probeTokens)
    const remoteAfter = await Promise.all(stages.map(async st => st.stats()))
    const perStep = (field: 'decodeMs' | 'cpuMs' | 'runQueueMs' | 'otherCpuMs' | 'fullGcs' | 'fullGcMs', steps: 'decodeSteps' | 'steps'): number[] =>
      remoteAfter.map((r, i) => (r[field] - remoteBefore[i][field]) / Math.max(1, r[steps] - remoteBefore[i][steps]))
    const stageComputeMs = perStep('decodeMs', 'decodeSteps')
    const stageCpuMs = perStep('cpuMs', 'steps')
    const stageRunQueueMs = perStep('runQueueMs', 'steps')
    const stageOtherThreadsCpuMs = perStep('otherCpuMs', 'steps')
    const stageFullGcMs = perStep('fullGcMs', 'steps')
    const stageFullGcs = perStep('fullGcs', 'steps')
    const hopInputs = stages.map((_, i) => probe.inputs(i))
    await probe.close()
    // the same layers in this process, in pipeline order (each hop's weights leave the caches
    // before it runs again, as in the pipeline): back to back, then each step after sleeping as
    // long as a stage sleeps between its steps (a token's time less its own hop)
    const tokenMs = hopMs.reduce((a, b) => a + b, 0)
    const idleMs = hopMs.map(h => Math.max(0, tokenMs - h))
    const ranges = await Promise.all(stages.map(async st => loadRange(dir, { start: st.info.start, end: st.info.end })))
    let hopComputeMs: number[]
    let hopComputeAfterIdleMs: number[]
    try {
      hopComputeMs = await timeRangesInProcess(ranges, hopInputs, probeTokens, null)
      hopComputeAfterIdleMs = await timeRangesInProcess(ranges, hopInputs, probeTokens, idleMs)
    } finally {
      ranges.forEach(r => { r.dispose() })
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
    const ms = (list: number[]): string => list.map(v => v.toFixed(2)).join(', ')
    out(`per hop and decode step: as the client sees it ${ms(hopMs)} ms; computing in the stage process ${ms(stageComputeMs)} ms`)
    out(`  per step in the stage process: main thread cpu ${ms(stageCpuMs)} ms (layers and protocol), other threads ${ms(stageOtherThreadsCpuMs)} ms, waited for a core ${ms(stageRunQueueMs)} ms, full GCs ${ms(stageFullGcs)} (${ms(stageFullGcMs)} ms paused)`)
    out(`the same layers in this process: back to back ${ms(hopComputeMs)} ms; after sleeping as long as each stage does (${ms(idleMs)} ms) ${ms(hopComputeAfterIdleMs)} ms`)
    await node.stop()
    full.dispose()
    local.dispose()
    out(JSON.stringify({
      bench: 'pipeline',
      backend: backend.name,
      hugePages: backend.hugePages ?? null,
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
      probeStepMs: Math.round(probeStepMs * 100) / 100,
      clientLocalMs: Math.round(clientLocalMs * 100) / 100,
      hopMs: hopMs.map(ms => Math.round(ms * 100) / 100),
      stageComputeMs: stageComputeMs.map(ms => Math.round(ms * 100) / 100),
      stageCpuMs: stageCpuMs.map(ms => Math.round(ms * 100) / 100),
      stageRunQueueMs: stageRunQueueMs.map(ms => Math.round(ms * 100) / 100),
      stageOtherThreadsCpuMs: stageOtherThreadsCpuMs.map(ms => Math.round(ms * 100) / 100),
      stageFullGcMs: stageFullGcMs.map(ms => Math.round(ms * 100) / 100),
      stageFullGcs: stageFullGcs.map(n => Math.round(n * 100) / 100),
      hopComputeMs: hopComputeMs.map(ms => Math.round(ms * 100) / 100),
      hopComputeAfterIdleMs: hopComputeAfterIdleMs.map(ms => Math.round(ms * 100) / 100),
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
