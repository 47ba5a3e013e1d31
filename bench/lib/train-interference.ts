/**
 * bench/train --interference (issue 12 item 6, the interference figures):
 * what the micro-step trainer costs a serving node's inference, and how
 * much of the CPU that inference leaves idle the trainer uses.
 *
 * The node as a daemon runs it, in this one process: a chain store (temp
 * folder) with a random-weight Qwen3 model of the bench's shape imported
 * (importModelWithGenesis) and an ids dataset of random tokens; the real
 * InferenceService (wasm, --workers 0: inference on the main thread, as
 * the daemon's `auto` does below hidden 4096) serving generations wrapped
 * in a `generating` counter exactly as daemon.ts does; and the trainer as
 * the daemon's `train` IPC method runs it: trainLocal with a
 * MicroStepScheduler whose busy() is `generating > 0`. Both run on the
 * main thread (tfjs is process-wide), so they share one core.
 *
 * Load: a client issuing greedy generations of --interference-tokens new
 * tokens from a short prompt, with exponential think times (seeded) whose
 * mean is set from a calibration (generations back to back: their
 * thread CPU C) to C x (1 - load) / load, so that on an otherwise idle core
 * inference alone keeps about --interference-load of the thread busy.
 * Step latency: the first step of a generation is timed from the request
 * (so it includes any wait for a training unit, plus the prefill), each
 * later step from the previous token. Windows of --interference-window
 * seconds alternate idle (the client alone) and training (the client with
 * a training job running), --interference-rounds of each; the percentiles
 * pool each mode's windows, and the per-window p95s show the noise.
 *
 * CPU share, per training window of wall time W, on one core (the main
 * thread; process.threadCpuUsage): the trainer's CPU = the thread CPU used
 * inside training units (MicroStepScheduler.unitCpuMs); the rest of the
 * thread's CPU in the window is inference and everything else of the
 * node; the CPU inference left idle = W - (thread CPU - trainer's CPU);
 * trainerCpuShare = trainer's CPU / that idle CPU (1 = the trainer filled
 * every idle moment; the OS taking the core away from this process, which
 * a shared box does, counts as idle the trainer did not use).
 */
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createSignerFromSeed } from '../../src/chain/block-crypto.ts'
import { createChainStore } from '../../src/chain/chain-store.ts'
import { addDataset } from '../../src/learning/dataset-store.ts'
import { importModelWithGenesis } from '../../src/learning/model-genesis.ts'
import { TrainErrorCode } from '../../src/learning/train/errors.ts'
import { trainLocal } from '../../src/learning/train/local-train.ts'
import { MicroStepScheduler, threadCpuMs } from '../../src/learning/train/scheduler.ts'
import { createInferenceService } from '../../src/model/inference-service.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from '../../src/model/qwen3/plan.ts'
import { encodeSafetensors } from '../../src/model/safetensors/writer.ts'
import { randomLayer } from './random-layer.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

export interface InterferenceOptions {
  config: Qwen3Config
  /** the trainer's sequence length (tokens per micro-batch) */
  seq: number
  batch: number
  rank: number
  /** seconds per window */
  windowS: number
  /** windows of each mode (idle, training), interleaved */
  rounds: number
  /** the fraction of the thread inference alone keeps busy */
  load: number
  /** new tokens per generation */
  tokens: number
  promptTokens: number
  say(s: string): void
}

interface WindowFigures {
  mode: 'idle' | 'training'
  wallMs: number
  threadCpuMs: number
  trainerCpuMs: number
  trainerMs: number
  generatingMs: number
  /** ms the thread waited for a core (null: unknown) */
  runQueueMs: number | null
  generations: number
  units: number
  steps: number[]
  first: number[]
}

export interface InterferenceJson {
  definition: string
  model: { layers: number, hidden: number, vocab: number }
  trainer: { seq: number, batch: number, loraRank: number, unitMeanMs: number, unitMaxMs: number }
  load: { target: number, newTokens: number, promptTokens: number, meanThinkMs: number, inferenceCpuIdle: number }
  windowS: number
  rounds: number
  p50IdleMs: number
  p95IdleMs: number
  p50TrainingMs: number
  p95TrainingMs: number
  p95Ratio: number
  firstStep: { p50IdleMs: number, p95IdleMs: number, p50TrainingMs: number, p95TrainingMs: number, p95Ratio: number }
  p95PerWindow: { idle: number[], training: number[] }
  trainerCpuShare: number
  trainerCpuSharePerWindow: number[]
  /** trainerCpuShare without the time the thread waited for a core on the OS run queue (Linux schedstat; null elsewhere) */
  trainerCpuShareOfRunnable: number | null
  /** the share of the training windows' wall time the thread waited for a core (another process had it) */
  runQueueShare: number | null
  /** wall time inside training units / wall time outside generations: the scheduler's share of the idle time, whatever the OS gave the thread */
  trainerTimeShare: number
  /** thread CPU / wall time inside training units: below 1 when the OS ran other processes on the core (a shared box) */
  unitCpuPerWall: number
  goals: { p95RatioAtMost110: boolean, trainerCpuShareAtLeast80: boolean }
}

const round = (x: number, d = 3): number => Number(x.toFixed(d))

function percentile (xs: readonly number[], p: number): number {
  if (xs.length === 0) {
    return NaN
  }
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]
}

/**
 * The ms this thread has waited on the OS run queue (runnable, a core busy
 * with another thread): Linux's /proc/thread-self/schedstat, second field
 * (ns); null where it cannot be read.
 */
function runQueueWaitMs (): number | null {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6
  } catch {
    return null
  }
}

/** seeded xorshift32 in (0, 1) */
function uniform (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return ((s >>> 0) + 0.5) / 4294967296
  }
}

/** The HF config.json of `c` (the importer reads a checkpoint folder). */
function hfConfig (c: Qwen3Config): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: false,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: 'float32'
  }
}

/** A checkpoint folder of random weights of shape `c` (every layer the same random layer). */
async function writeRandomCheckpoint (dir: string, c: Qwen3Config): Promise<void> {
  const layer = randomLayer(c)
  const tensors = new Map<string, RawTensor>()
  for (let l = 0; l < c.numLayers; l++) {
    for (const [name, t] of layer.tensors) {
      tensors.set(name.replace('model.layers.0.', `model.layers.${l}.`), t)
    }
  }
  const next = uniform(0x51ed)
  const matrix = (rows: number, cols: number): RawTensor => {
    const f = new Float32Array(rows * cols)
    for (let i = 0; i < f.length; i++) {
      f[i] = (next() - 0.5) * 0.04
    }
    return { dtype: 'F32', shape: [rows, cols], data: new Uint8Array(f.buffer) }
  }
  tensors.set(EMBED_TOKENS, matrix(c.vocabSize, c.hiddenSize))
  tensors.set(LM_HEAD, matrix(c.vocabSize, c.hiddenSize))
  tensors.set(FINAL_NORM, { dtype: 'F32', shape: [c.hiddenSize], data: new Uint8Array(new Float32Array(c.hiddenSize).fill(1).buffer) })
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'config.json'), JSON.stringify(hfConfig(c)))
  await writeFile(join(dir, 'model.safetensors'), encodeSafetensors([...tensors].sort((a, b) => a[0] < b[0] ? -1 : 1)))
}

export async function interferenceFigures (o: InterferenceOptions): Promise<InterferenceJson> {
  const c = o.config
  const dir = await mkdtemp(join(tmpdir(), 'blyd-bench-interference-'))
  const store = createChainStore({ path: join(dir, 'chain'), fsync: false })
  await store.start()
  const inference = createInferenceService({ store: () => store, backend: 'wasm', workers: 0 })
  try {
    const signer = createSignerFromSeed(new Uint8Array(32).fill(7))
    await writeRandomCheckpoint(join(dir, 'ckpt'), c)
    const imported = await importModelWithGenesis({ store, signer, dir: join(dir, 'ckpt') })
    const model = imported.modelId
    const next = uniform(0xda7a)
    const seqs: number[][] = []
    for (let i = 0; i < 64; i++) {
      seqs.push(Array.from({ length: o.seq }, () => 2 + Math.floor(next() * (c.vocabSize - 2))))
    }
    await addDataset({ store, signer, bytes: new TextEncoder().encode(seqs.map(ids => JSON.stringify({ ids })).join('\n') + '\n'), name: 'interference', format: 'ids', model, splitTokens: o.seq, evalPermille: 100 })
    await inference.start()

    // the daemon's generation path: a counter around the service's generate (daemon.ts), read by the trainer's busy()
    let generating = 0
    let generatingMs = 0
    const promptIds = Array.from({ length: o.promptTokens }, (_, i) => 2 + (i * 37) % (c.vocabSize - 2))
    const generate = async (onToken?: () => void): Promise<void> => {
      generating++
      const t0 = performance.now()
      try {
        await inference.generate({ model, promptIds, maxNewTokens: o.tokens, temperature: 0 }, onToken)
      } finally {
        generating--
        generatingMs += performance.now() - t0
      }
    }

    // calibration: generations back to back (the first loads the model)
    // (by CPU: on a shared box a generation's wall time includes the time the OS ran others)
    await generate()
    const t0 = performance.now()
    const c0 = threadCpuMs()
    for (let i = 0; i < 5; i++) {
      await generate()
    }
    const genMs = (performance.now() - t0) / 5
    const genCpuMs = (threadCpuMs() - c0) / 5
    // think time from the CPU a generation needs (not its wall time, which a busy box stretches):
    // on an otherwise idle core inference keeps `load` of the thread busy
    const meanThinkMs = genCpuMs * (1 - o.load) / o.load
    o.say(`interference: a generation of ${o.tokens} tokens alone takes ${genMs.toFixed(1)} ms (${genCpuMs.toFixed(1)} ms CPU); mean think time ${meanThinkMs.toFixed(0)} ms for ~${Math.round(o.load * 100)}% of the thread`)
    const think = uniform(0x7417)

    /** the client for one window: generations with think times until `ms` have passed */
    const client = async (w: WindowFigures, ms: number): Promise<void> => {
      const end = performance.now() + ms
      for (;;) {
        // the request is due when its think time ends: a timer that fires late because a
        // training unit held the thread counts that wait, as a request arriving on a socket would
        const thinkMs = -Math.log(think()) * meanThinkMs
        const due = performance.now() + thinkMs
        await sleep(thinkMs)
        if (performance.now() >= end) {
          return
        }
        const start = due
        let last = start
        await generate(() => {
          const now = performance.now()
          ;(last === start ? w.first : w.steps).push(now - last)
          last = now
        })
        w.generations++
      }
    }

    const windows: WindowFigures[] = []
    let unitMs = 0
    let unitCount = 0
    let unitMax = 0
    const window = async (mode: WindowFigures['mode']): Promise<void> => {
      const w: WindowFigures = { mode, wallMs: 0, threadCpuMs: 0, trainerCpuMs: 0, trainerMs: 0, generatingMs: 0, runQueueMs: null, generations: 0, units: 0, steps: [], first: [] }
      let scheduler: MicroStepScheduler | undefined
      let controller: AbortController | undefined
      let job: Promise<unknown> = Promise.resolve()
      if (mode === 'training') {
        scheduler = new MicroStepScheduler({ busy: () => generating > 0 })
        controller = new AbortController()
        job = trainLocal({ store, signer, model, dataset: 'interference', steps: 1_000_000, batch: o.batch, seq: o.seq, loraRank: o.rank, evalWindows: 1, scheduler, signal: controller.signal })
          .catch((err: any) => {
            if (err?.code !== TrainErrorCode.ABORTED) {
              throw err
            }
          })
        // warm-up: the job has read its weights and runs training units (past the eval-before unit)
        while (scheduler.units < 3) {
          await sleep(20)
        }
      }
      const s0 = { t: performance.now(), cpu: threadCpuMs(), trainer: scheduler?.unitCpuMs ?? 0, trainerMs: scheduler?.unitMs ?? 0, units: scheduler?.units ?? 0, generatingMs, rq: runQueueWaitMs() }
      await client(w, o.windowS * 1000)
      w.wallMs = performance.now() - s0.t
      w.threadCpuMs = threadCpuMs() - s0.cpu
      w.trainerCpuMs = (scheduler?.unitCpuMs ?? 0) - s0.trainer
      w.units = (scheduler?.units ?? 0) - s0.units
      w.trainerMs = (scheduler?.unitMs ?? 0) - s0.trainerMs
      w.generatingMs = generatingMs - s0.generatingMs
      const rq = runQueueWaitMs()
      w.runQueueMs = rq != null && s0.rq != null ? rq - s0.rq : null
      controller?.abort()
      await job
      windows.push(w)
      const share = w.trainerCpuMs / Math.max(1e-9, w.wallMs - (w.threadCpuMs - w.trainerCpuMs))
      o.say(`  ${mode.padEnd(8)} ${(w.wallMs / 1000).toFixed(1)} s: ${w.generations} generations, step p50 ${percentile([...w.first, ...w.steps], 0.5).toFixed(1)} ms p95 ${percentile([...w.first, ...w.steps], 0.95).toFixed(1)} ms, first step p95 ${percentile(w.first, 0.95).toFixed(1)} ms; thread CPU ${(w.threadCpuMs / w.wallMs * 100).toFixed(0)}%` +
        (mode === 'training' ? `, trainer ${(w.trainerCpuMs / w.wallMs * 100).toFixed(0)}% in ${w.units} units (share of idle CPU ${(share * 100).toFixed(1)}%, of idle time ${(w.trainerMs / (w.wallMs - w.generatingMs) * 100).toFixed(1)}%, CPU/wall in units ${(w.trainerCpuMs / w.trainerMs * 100).toFixed(0)}%, waited for a core ${w.runQueueMs == null ? '?' : (w.runQueueMs / w.wallMs * 100).toFixed(0)}% of the window, share of the idle CPU the OS gave ${w.runQueueMs == null ? '?' : (w.trainerCpuMs / (w.wallMs - w.runQueueMs - (w.threadCpuMs - w.trainerCpuMs)) * 100).toFixed(1)}%; units mean ${(scheduler!.unitMs / scheduler!.units).toFixed(1)} ms, max ${scheduler!.maxUnitMs.toFixed(1)} ms)` : ''))
      if (scheduler != null) {
        unitMs += scheduler.unitMs
        unitCount += scheduler.units
        unitMax = Math.max(unitMax, scheduler.maxUnitMs)
      }
    }
    for (let r = 0; r < o.rounds; r++) {
      await window('idle')
      await window('training')
    }

    const of = (mode: WindowFigures['mode']): WindowFigures[] => windows.filter(w => w.mode === mode)
    const pooled = (mode: WindowFigures['mode'], first: boolean, all: boolean): number[] => of(mode).flatMap(w => all ? [...w.first, ...w.steps] : first ? w.first : w.steps)
    const idle = pooled('idle', false, true)
    const training = pooled('training', false, true)
    const idleFirst = pooled('idle', true, false)
    const trainingFirst = pooled('training', true, false)
    const trainingWindows = of('training')
    const trainerCpu = trainingWindows.reduce((n, w) => n + w.trainerCpuMs, 0)
    const left = trainingWindows.reduce((n, w) => n + w.wallMs - (w.threadCpuMs - w.trainerCpuMs), 0)
    const idleCpu = of('idle').reduce((n, w) => n + w.threadCpuMs, 0) / of('idle').reduce((n, w) => n + w.wallMs, 0)
    const p95Ratio = percentile(training, 0.95) / percentile(idle, 0.95)
    const share = trainerCpu / left
    const known = trainingWindows.every(w => w.runQueueMs != null)
    const shareOfRunnable = known ? trainerCpu / trainingWindows.reduce((n, w) => n + w.wallMs - (w.runQueueMs ?? 0) - (w.threadCpuMs - w.trainerCpuMs), 0) : null
    const timeShare = trainingWindows.reduce((n, w) => n + w.trainerMs, 0) / trainingWindows.reduce((n, w) => n + w.wallMs - w.generatingMs, 0)
    return {
      definition: 'step latency: a generation\'s first step from its request (any wait for a training unit + the prefill), each later step from the previous token; p50/p95 pooled over the windows of each mode. trainerCpuShare: over the training windows, on one core (the main thread, where the inference service with --workers 0 and the trainer both run; process.threadCpuUsage), the thread CPU used inside training units / (wall time - the thread CPU used outside them); trainerTimeShare: wall time inside units / wall time outside generations; unitCpuPerWall: how much of the units\' wall time the OS gave the thread; trainerCpuShareOfRunnable: as trainerCpuShare with the time the thread waited on the OS run queue (/proc/thread-self/schedstat) taken out of the idle CPU, i.e. the idle CPU the OS made available',
      model: { layers: c.numLayers, hidden: c.hiddenSize, vocab: c.vocabSize },
      trainer: { seq: o.seq, batch: o.batch, loraRank: o.rank, unitMeanMs: round(unitMs / Math.max(1, unitCount), 1), unitMaxMs: round(unitMax, 1) },
      load: { target: o.load, newTokens: o.tokens, promptTokens: o.promptTokens, meanThinkMs: round(meanThinkMs, 1), inferenceCpuIdle: round(idleCpu) },
      windowS: o.windowS,
      rounds: o.rounds,
      p50IdleMs: round(percentile(idle, 0.5), 2),
      p95IdleMs: round(percentile(idle, 0.95), 2),
      p50TrainingMs: round(percentile(training, 0.5), 2),
      p95TrainingMs: round(percentile(training, 0.95), 2),
      p95Ratio: round(p95Ratio),
      firstStep: {
        p50IdleMs: round(percentile(idleFirst, 0.5), 2),
        p95IdleMs: round(percentile(idleFirst, 0.95), 2),
        p50TrainingMs: round(percentile(trainingFirst, 0.5), 2),
        p95TrainingMs: round(percentile(trainingFirst, 0.95), 2),
        p95Ratio: round(percentile(trainingFirst, 0.95) / percentile(idleFirst, 0.95))
      },
      p95PerWindow: {
        idle: of('idle').map(w => round(percentile([...w.first, ...w.steps], 0.95), 2)),
        training: trainingWindows.map(w => round(percentile([...w.first, ...w.steps], 0.95), 2))
      },
      trainerCpuShare: round(share),
      trainerCpuSharePerWindow: trainingWindows.map(w => round(w.trainerCpuMs / (w.wallMs - (w.threadCpuMs - w.trainerCpuMs)))),
      trainerCpuShareOfRunnable: shareOfRunnable == null ? null : round(shareOfRunnable),
      runQueueShare: known ? round(trainingWindows.reduce((n, w) => n + (w.runQueueMs ?? 0), 0) / trainingWindows.reduce((n, w) => n + w.wallMs, 0)) : null,
      trainerTimeShare: round(timeShare),
      unitCpuPerWall: round(trainerCpu / trainingWindows.reduce((n, w) => n + w.trainerMs, 0)),
      goals: { p95RatioAtMost110: p95Ratio <= 1.1, trainerCpuShareAtLeast80: share >= 0.8 }
    }
  } finally {
    await inference.stop().catch(() => {})
    await store.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}
