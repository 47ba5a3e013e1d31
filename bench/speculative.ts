/**
 * Speculative decoding over a slow mesh. Writes a random-weight demo
 * checkpoint, starts 4 in-process stage servers on 127.0.0.1 (each a quarter
 * of the decoder layers) that each wait --delay ms before every RESULT (the
 * test-only fault-injection switch, standing in for a per-hop network delay),
 * and generates greedily through them twice: plainly (one target step per
 * token) and speculatively, the draft being the target's weights plus a
 * small seeded delta, run locally on the client. Reports tokens/s of both,
 * the speed-up, the acceptance rate, and whether the greedy tokens agree.
 * Usage: npm run bench -- speculative [--delay 20] [--tokens 48] [--k 4] [--delta 0.03] [--layers 8] [--hidden 256] [--vocab 4096]
 * The last line printed is one JSON object.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { selectBackend } from '../src/model/backend.ts'
import { writeDemoCheckpoint } from '../src/model/demo-checkpoint.ts'
import { generate } from '../src/model/generation/generate.ts'
import { createLocalTokenSession } from '../src/model/generation/local-session.ts'
import { speculativeGenerate } from '../src/model/generation/speculative.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { SafetensorsCheckpoint } from '../src/model/safetensors/checkpoint.ts'
import { perturbedSource } from '../src/model/weight-delta.ts'
import { MapWeightSource } from '../src/model/weight-source.ts'
import { createBlyLibp2p } from '../src/net/libp2p-node.ts'
import { createPipelineClient } from '../src/pipeline/pipeline-client.ts'
import { createStageServer } from '../src/pipeline/stage-server.ts'
import { silentLogger } from '../src/protocols/logger.ts'
import type { RawTensor } from '../src/model/safetensors/dtypes.ts'
import type { BlyLibp2p } from '../src/net/libp2p-node.ts'
import type { StageServer } from '../src/pipeline/stage-server.ts'

const MODEL_ID = 'speculative-bench-demo'
const STAGES = 4

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

function out (line: string): void {
  process.stdout.write(line + '\n')
}

async function main (): Promise<void> {
  const delay = arg('delay', 20)
  const maxNewTokens = arg('tokens', 48)
  const k = arg('k', 4)
  const delta = arg('delta', 0.03)
  const backend = await selectBackend('auto')
  const dir = await mkdtemp(join(tmpdir(), 'bly-speculative-bench-'))
  const nodes: BlyLibp2p[] = []
  const servers: StageServer[] = []
  const ranges: LayerRange[] = []
  try {
    await writeDemoCheckpoint(dir, { layers: arg('layers', 8), hidden: arg('hidden', 256), heads: 4, kvHeads: 2, headDim: 64, intermediate: arg('hidden', 256) * 3, vocab: arg('vocab', 4096), dtype: 'F32', tokenizer: false, seed: 11 })
    const config = parseQwen3Config(await readFile(join(dir, 'config.json'), 'utf8'))
    const tensors = new Map<string, RawTensor>()
    const ck = await SafetensorsCheckpoint.open(dir)
    try {
      for (const name of ck.names()) {
        tensors.set(name, await ck.read(name))
      }
    } finally {
      await ck.close()
    }
    const source = new MapWeightSource(tensors, dir)
    const per = config.numLayers / STAGES
    const route = []
    for (let s = 0; s < STAGES; s++) {
      const layers = await LayerRange.load(config, source, { start: s * per, end: (s + 1) * per })
      ranges.push(layers)
      const node = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
      nodes.push(node)
      const server = createStageServer({ libp2p: node, logger: silentLogger() }, { modelId: MODEL_ID, layers, faults: { stepDelayMs: delay } })
      await server.start()
      servers.push(server)
      route.push({ peerId: node.peerId, multiaddrs: node.getMultiaddrs(), start: layers.start, end: layers.end })
    }
    const local = await LayerRange.load(config, source, { start: 0, end: 0, embedding: true, head: true })
    ranges.push(local)
    const draftModel = await LayerRange.load(config, perturbedSource(tensors, { scale: delta, seed: 7 }), { start: 0, end: config.numLayers, embedding: true, head: true })
    ranges.push(draftModel)
    const client = await createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(client)
    const pipeline = createPipelineClient({ libp2p: client, modelId: MODEL_ID, local, route })
    const prompt = Array.from({ length: 8 }, (_, i) => (i * 37 + 11) % config.vocabSize)
    out(`demo model: ${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}; ${STAGES} stages, ${delay} ms per hop; backend ${backend.name}; draft = target + ${delta} x RMS noise`)

    // plain greedy: one target step per token (the prompt's step is not timed)
    const plainTokens: number[] = []
    let t0 = 0
    for await (const t of generate(pipeline, prompt, { maxNewTokens: maxNewTokens + 1 })) {
      if (t.index === 0) {
        t0 = performance.now()
      } else {
        plainTokens.push(t.id)
      }
    }
    const plainMs = performance.now() - t0

    // speculative greedy, timed the same way (from the first token)
    const target = pipeline.createSession()
    const draft = createLocalTokenSession(draftModel)
    const specTokens: number[] = []
    let t1 = 0
    let stats
    try {
      const it = speculativeGenerate(target, draft, prompt, { k, maxNewTokens: maxNewTokens + 1 })
      for (;;) {
        const next = await it.next()
        if (next.done === true) {
          stats = next.value.stats
          break
        }
        if (next.value.index === 0) {
          t1 = performance.now()
        } else {
          specTokens.push(next.value.id)
        }
      }
    } finally {
      await target.close()
      draft.dispose()
    }
    const specMs = performance.now() - t1
    const plainTps = plainTokens.length / (plainMs / 1000)
    const specTps = specTokens.length / (specMs / 1000)
    const identical = plainTokens.length === specTokens.length && plainTokens.every((id, i) => id === specTokens[i])
    out(`plain:       ${plainTokens.length} tokens in ${plainMs.toFixed(0)} ms = ${plainTps.toFixed(2)} tokens/s`)
    out(`speculative: ${specTokens.length} tokens in ${specMs.toFixed(0)} ms = ${specTps.toFixed(2)} tokens/s (${stats.targetSteps} target steps, acceptance ${(stats.acceptanceRate * 100).toFixed(1)}%, final k ${stats.k})`)
    out(`speed-up ${(specTps / plainTps).toFixed(2)}x; greedy tokens identical: ${identical}`)
    out(JSON.stringify({
      bench: 'speculative',
      stages: STAGES,
      delayMsPerHop: delay,
      layers: config.numLayers,
      hidden: config.hiddenSize,
      vocab: config.vocabSize,
      delta,
      tokens: specTokens.length,
      plainTokensPerS: Number(plainTps.toFixed(3)),
      speculativeTokensPerS: Number(specTps.toFixed(3)),
      speedup: Number((specTps / plainTps).toFixed(3)),
      acceptanceRate: Number(stats.acceptanceRate.toFixed(4)),
      targetSteps: stats.targetSteps,
      rounds: stats.rounds,
      finalK: stats.k,
      identical
    }))
    if (!identical) {
      process.exitCode = 1
    }
  } finally {
    await Promise.allSettled(servers.map(async s => s.stop()))
    await Promise.allSettled(nodes.map(async n => n.stop()))
    for (const r of ranges) {
      r.dispose()
    }
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
