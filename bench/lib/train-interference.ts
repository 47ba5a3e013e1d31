/**
 * bench/train --interference (issue 12 item 6, the interference figures):
 * what the trainer costs a serving node's inference, and how much of the
 * CPU that inference leaves idle the trainer uses.
 *
 * The node as a daemon runs it, in this one process: a chain store (temp
 * folder) with a random-weight Qwen3 model of the bench's shape imported
 * (importModelWithGenesis) and an ids dataset of random tokens; the real
 * InferenceService (wasm, workers 0: inference on the main thread, as the
 * daemon's `auto` does below hidden 4096) serving generations wrapped in a
 * `generating` counter as daemon.ts does; the trainer as the daemon's
 * `train` IPC method runs it: trainLocal with busy() = `generating > 0`,
 * either on the main thread (a MicroStepScheduler there: a request waits
 * for the unit in flight) or in a training thread at nice 19 (trainLocal's
 * `thread`, what the daemon does). The process is pinned to one core
 * (--interference-cpu, taskset), so inference and training share it.
 *
 * Load: a client issuing greedy generations of --interference-tokens new
 * tokens from a short prompt, with exponential think times (seeded) of
 * mean C x (1 - load) / load, C the thread CPU of one generation measured
 * back to back: on an otherwise idle core inference alone keeps about
 * --interference-load of it busy. Step latency: a generation's first step
 * is timed from when its request was due (the end of its think time, so a
 * timer held back by a training unit counts that wait, as a request
 * arriving on a socket would) and includes the prefill; each later step
 * from the previous token. Windows of --interference-window seconds cycle
 * idle (the client alone), main (with a main-thread trainer), thread
 * (with a training thread), --interference-rounds times; percentiles pool
 * each mode's windows, and the per-window p95s show the noise.
 *
 * CPU, per window of wall time W on the pinned core: T = the trainer's CPU
 * (main: the thread CPU used inside units, MicroStepScheduler.unitCpuMs;
 * thread: the training thread's CPU from /proc/self/task/TID/schedstat);
 * R = this process's other CPU (process.cpuUsage - T: inference, the rest
 * of the node, V8's threads); O = the CPU other processes used on the core
 * (/proc/stat's busy time of the core - process.cpuUsage; the box is
 * shared). trainerCpuShare = T / (W - R): the share of what inference left
 * idle on the core that the trainer used; trainerCpuShareOfAvailable =
 * T / (W - R - O): the same without the CPU other processes took.
 */
import { spawnSync } from 'node:child_process'
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
import { MicroStepScheduler } from '../../src/learning/train/scheduler.ts'
import { createInferenceService } from '../../src/model/inference-service.ts'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD } from '../../src/model/qwen3/plan.ts'
import { encodeSafetensors } from '../../src/model/safetensors/writer.ts'
import { randomLayer } from './random-layer.ts'
import type { SchedulerCounters } from '../../src/learning/train/train-protocol.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

export type TrainerPlace = 'main' | 'thread'

export interface InterferenceOptions {
  config: Qwen3Config
  /** the trainer's sequence length (tokens per micro-batch) */
  seq: number
  batch: number
  rank: number
  /** seconds per window */
  windowS: number
  /** cycles of (idle, main, thread) windows */
  rounds: number
  /** the fraction of the core inference alone keeps busy */
  load: number
  /** new tokens per generation */
  tokens: number
  promptTokens: number
  /** the core the process is pinned to (null: not pinned) */
  cpu: number | null
  /** whose figures are the headline ones */
  headline: TrainerPlace
  say(s: string): void
}

type Mode = 'idle' | TrainerPlace

interface WindowFigures {
  mode: Mode
  wallMs: number
  /** the trainer's CPU (T), the process's other CPU (R), other processes' CPU on the core (O; null unpinned) */
  trainerCpuMs: number
  restCpuMs: number
  othersCpuMs: number | null
  /** wall time inside units and inside generations (main-thread trainer) */
  unitWallMs: number
  generatingMs: number
  generations: number
  units: number
  steps: number[]
  first: number[]
}

export interface TrainerFigures {
  p50Ms: number
  p95Ms: number
  p95Ratio: number
  firstStepP50Ms: number
  firstStepP95Ms: number
  firstStepP95Ratio: number
  p95PerWindow: number[]
  trainerCpuShare: number
  trainerCpuSharePerWindow: number[]
  trainerCpuShareOfAvailable: number | null
  /** the share of the windows' wall time other processes took the core */
  othersShare: number | null
  /** main-thread trainer: wall time inside units / wall time outside generations */
  trainerTimeShare: number | null
  unitMeanMs: number
  unitMaxMs: number
  units: number
}

export interface InterferenceJson {
  definition: string
  trainer: TrainerPlace
  model: { layers: number, hidden: number, vocab: number }
  job: { seq: number, batch: number, loraRank: number }
  load: { target: number, newTokens: number, promptTokens: number, meanThinkMs: number, inferenceCpuIdle: number }
  cpu: number | null
  windowS: number
  rounds: number
  p50IdleMs: number
  p95IdleMs: number
  p50TrainingMs: number
  p95TrainingMs: number
  p95Ratio: number
  trainerCpuShare: number
  firstStep: { p50IdleMs: number, p95IdleMs: number, p50TrainingMs: number, p95TrainingMs: number, p95Ratio: number }
  p95IdlePerWindow: number[]
  byTrainer: Record<TrainerPlace, TrainerFigures>
  goals: { p95RatioAtMost110: boolean, trainerCpuShareAtLeast80: boolean }
}

/** CPU ms of the process (every thread) */
function processCpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** busy ms of core `cpu` since boot (/proc/stat: user nice system irq softirq steal, in USER_HZ = 100 ticks); null where unreadable */
function coreBusyMs (cpu: number | null): number | null {
  if (cpu == null) {
    return null
  }
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find(l => l.startsWith(`cpu${cpu} `))
    if (line == null) {
      return null
    }
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 10
  } catch {
    return null
  }
}

/** CPU ms of thread `tid` of this process (/proc/self/task/TID/schedstat, ns); null where unreadable */
function taskCpuMs (tid: number | null): number | null {
  if (tid == null) {
    return null
  }
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
  } catch {
    return null
  }
}

const round = (x: number, d = 3): number => Number(x.toFixed(d))

function percentile (xs: readonly number[], p: number): number {
  if (xs.length === 0) {
    return NaN
  }
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]
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

/** Pins every thread of this process to core `cpu` (taskset); false where that failed. */
function pin (cpu: number): boolean {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { encoding: 'utf8' })
  return r.status === 0
}

export async function interferenceFigures (o: InterferenceOptions): Promise<InterferenceJson> {
  const c = o.config
  const cpu = o.cpu != null && pin(o.cpu) ? o.cpu : null
  if (o.cpu != null && cpu == null) {
    o.say(`interference: could not pin the process to core ${o.cpu} (taskset): the CPU figures count every core`)
  }
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
    const busy = (): boolean => generating > 0
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

    // calibration: generations back to back (the first loads the model), by CPU (a busy box stretches wall time)
    await generate()
    const t0 = performance.now()
    const c0 = processCpuMs()
    for (let i = 0; i < 5; i++) {
      await generate()
    }
    const genMs = (performance.now() - t0) / 5
    const genCpuMs = (processCpuMs() - c0) / 5
    const meanThinkMs = genCpuMs * (1 - o.load) / o.load
    o.say(`interference: a generation of ${o.tokens} tokens alone takes ${genMs.toFixed(1)} ms (${genCpuMs.toFixed(1)} ms CPU); mean think time ${meanThinkMs.toFixed(0)} ms for ~${Math.round(o.load * 100)}% of the core`)
    const think = uniform(0x7417)

    /** the client for one window: generations with think times until `ms` have passed */
    const client = async (w: WindowFigures, ms: number): Promise<void> => {
      const end = performance.now() + ms
      for (;;) {
        const thinkMs = -Math.log(think()) * meanThinkMs
        const due = performance.now() + thinkMs
        await sleep(thinkMs)
        if (performance.now() >= end) {
          return
        }
        let last = due
        let first = true
        await generate(() => {
          const now = performance.now()
          ;(first ? w.first : w.steps).push(now - last)
          first = false
          last = now
        })
        w.generations++
      }
    }

    /** a trainer running beside the client: its CPU, unit counters and how to stop it */
    interface Trainer {
      cpuMs(): number
      counters(): Pick<SchedulerCounters, 'units' | 'unitMs' | 'maxUnitMs'>
      stop(): Promise<void>
    }
    const startTrainer = async (place: TrainerPlace): Promise<Trainer> => {
      const controller = new AbortController()
      const common = { store, signer, model, dataset: 'interference', steps: 1_000_000, batch: o.batch, seq: o.seq, loraRank: o.rank, evalWindows: 1, signal: controller.signal }
      let counters: SchedulerCounters = { units: 0, unitMs: 0, maxUnitMs: 0, unitCpuMs: 0, deferrals: 0 }
      let tid: number | null = null
      const scheduler = new MicroStepScheduler({ busy })
      const job = (place === 'main'
        ? trainLocal({ ...common, scheduler })
        : trainLocal({ ...common, thread: { busy, onStarted: info => { tid = info.tid }, onUnit: c => { counters = c } } }))
        .catch((err: any) => {
          if (err?.code !== TrainErrorCode.ABORTED) {
            throw err
          }
        })
      const count = (): SchedulerCounters => place === 'main' ? { units: scheduler.units, unitMs: scheduler.unitMs, maxUnitMs: scheduler.maxUnitMs, unitCpuMs: scheduler.unitCpuMs, deferrals: scheduler.deferrals } : counters
      // warm-up: the job has its weights and runs training units (past the eval-before units)
      while (count().units < 2 * (c.numLayers + 1)) {
        await sleep(20)
      }
      return {
        cpuMs: () => place === 'main' ? scheduler.unitCpuMs : taskCpuMs(tid) ?? counters.unitCpuMs,
        counters: count,
        stop: async () => {
          controller.abort()
          await job
        }
      }
    }

    const windows: WindowFigures[] = []
    const unitStats: Record<TrainerPlace, { ms: number, n: number, max: number }> = { main: { ms: 0, n: 0, max: 0 }, thread: { ms: 0, n: 0, max: 0 } }
    const window = async (mode: Mode): Promise<void> => {
      const trainer = mode === 'idle' ? null : await startTrainer(mode)
      const sample = (): { t: number, proc: number, core: number | null, trainer: number, units: Pick<SchedulerCounters, 'units' | 'unitMs' | 'maxUnitMs'>, generatingMs: number } =>
        ({ t: performance.now(), proc: processCpuMs(), core: coreBusyMs(cpu), trainer: trainer?.cpuMs() ?? 0, units: trainer?.counters() ?? { units: 0, unitMs: 0, maxUnitMs: 0 }, generatingMs })
      const w: WindowFigures = { mode, wallMs: 0, trainerCpuMs: 0, restCpuMs: 0, othersCpuMs: null, unitWallMs: 0, generatingMs: 0, generations: 0, units: 0, steps: [], first: [] }
      const s0 = sample()
      await client(w, o.windowS * 1000)
      const s1 = sample()
      await trainer?.stop()
      w.wallMs = s1.t - s0.t
      w.trainerCpuMs = s1.trainer - s0.trainer
      w.restCpuMs = s1.proc - s0.proc - w.trainerCpuMs
      w.othersCpuMs = s0.core != null && s1.core != null ? Math.max(0, s1.core - s0.core - (s1.proc - s0.proc)) : null
      w.unitWallMs = s1.units.unitMs - s0.units.unitMs
      w.units = s1.units.units - s0.units.units
      w.generatingMs = s1.generatingMs - s0.generatingMs
      if (mode !== 'idle') {
        const u = unitStats[mode]
        u.ms += w.unitWallMs
        u.n += w.units
        u.max = Math.max(u.max, s1.units.maxUnitMs)
      }
      windows.push(w)
      const all = [...w.first, ...w.steps]
      const share = w.trainerCpuMs / (w.wallMs - w.restCpuMs)
      o.say(`  ${mode.padEnd(6)} ${(w.wallMs / 1000).toFixed(1)} s: ${w.generations} generations, step p50 ${percentile(all, 0.5).toFixed(1)} ms p95 ${percentile(all, 0.95).toFixed(1)} ms, first step p50 ${percentile(w.first, 0.5).toFixed(1)} p95 ${percentile(w.first, 0.95).toFixed(1)} ms; inference+node CPU ${(w.restCpuMs / w.wallMs * 100).toFixed(0)}%` +
        (w.othersCpuMs != null ? `, other processes ${(w.othersCpuMs / w.wallMs * 100).toFixed(0)}% of the core` : '') +
        (mode !== 'idle' ? `; trainer ${(w.trainerCpuMs / w.wallMs * 100).toFixed(0)}% in ${w.units} units (share of the idle CPU ${(share * 100).toFixed(1)}%` + (w.othersCpuMs != null ? `, of the idle CPU others left ${(w.trainerCpuMs / (w.wallMs - w.restCpuMs - w.othersCpuMs) * 100).toFixed(1)}%` : '') + `; unit mean ${(w.unitWallMs / Math.max(1, w.units)).toFixed(1)} ms)` : ''))
    }
    for (let r = 0; r < o.rounds; r++) {
      await window('idle')
      await window('main')
      await window('thread')
    }

    const of = (mode: Mode): WindowFigures[] => windows.filter(w => w.mode === mode)
    const steps = (ws: WindowFigures[]): number[] => ws.flatMap(w => [...w.first, ...w.steps])
    const firsts = (ws: WindowFigures[]): number[] => ws.flatMap(w => w.first)
    const sum = (ws: WindowFigures[], f: (w: WindowFigures) => number): number => ws.reduce((n, w) => n + f(w), 0)
    const idle = of('idle')
    const p95Idle = percentile(steps(idle), 0.95)
    const firstP95Idle = percentile(firsts(idle), 0.95)
    const figures = (place: TrainerPlace): TrainerFigures => {
      const ws = of(place)
      const share = sum(ws, w => w.trainerCpuMs) / sum(ws, w => w.wallMs - w.restCpuMs)
      const known = ws.every(w => w.othersCpuMs != null)
      return {
        p50Ms: round(percentile(steps(ws), 0.5), 2),
        p95Ms: round(percentile(steps(ws), 0.95), 2),
        p95Ratio: round(percentile(steps(ws), 0.95) / p95Idle),
        firstStepP50Ms: round(percentile(firsts(ws), 0.5), 2),
        firstStepP95Ms: round(percentile(firsts(ws), 0.95), 2),
        firstStepP95Ratio: round(percentile(firsts(ws), 0.95) / firstP95Idle),
        p95PerWindow: ws.map(w => round(percentile([...w.first, ...w.steps], 0.95), 2)),
        trainerCpuShare: round(share),
        trainerCpuSharePerWindow: ws.map(w => round(w.trainerCpuMs / (w.wallMs - w.restCpuMs))),
        trainerCpuShareOfAvailable: known ? round(sum(ws, w => w.trainerCpuMs) / sum(ws, w => w.wallMs - w.restCpuMs - (w.othersCpuMs ?? 0))) : null,
        othersShare: known ? round(sum(ws, w => w.othersCpuMs ?? 0) / sum(ws, w => w.wallMs)) : null,
        trainerTimeShare: place === 'main' ? round(sum(ws, w => w.unitWallMs) / sum(ws, w => w.wallMs - w.generatingMs)) : null,
        unitMeanMs: round(unitStats[place].ms / Math.max(1, unitStats[place].n), 1),
        unitMaxMs: round(unitStats[place].max, 1),
        units: unitStats[place].n
      }
    }
    const byTrainer = { main: figures('main'), thread: figures('thread') }
    const head = byTrainer[o.headline]
    const headWs = of(o.headline)
    const p95Ratio = percentile(steps(headWs), 0.95) / p95Idle
    const share = sum(headWs, w => w.trainerCpuMs) / sum(headWs, w => w.wallMs - w.restCpuMs)
    return {
      definition: 'step latency: a generation\'s first step from when its request was due (any wait for a training unit + the prefill), each later step from the previous token; p50/p95 pooled over the windows of each mode. CPU on the pinned core, per window of wall time W: T = the trainer\'s CPU (main thread: thread CPU inside units; training thread: its schedstat CPU), R = the process\'s other CPU (process.cpuUsage - T), O = other processes\' CPU on the core (/proc/stat busy - process.cpuUsage); trainerCpuShare = T / (W - R); trainerCpuShareOfAvailable = T / (W - R - O)',
      trainer: o.headline,
      model: { layers: c.numLayers, hidden: c.hiddenSize, vocab: c.vocabSize },
      job: { seq: o.seq, batch: o.batch, loraRank: o.rank },
      load: { target: o.load, newTokens: o.tokens, promptTokens: o.promptTokens, meanThinkMs: round(meanThinkMs, 1), inferenceCpuIdle: round(sum(idle, w => w.restCpuMs) / sum(idle, w => w.wallMs)) },
      cpu,
      windowS: o.windowS,
      rounds: o.rounds,
      p50IdleMs: round(percentile(steps(idle), 0.5), 2),
      p95IdleMs: round(p95Idle, 2),
      p50TrainingMs: head.p50Ms,
      p95TrainingMs: head.p95Ms,
      p95Ratio: round(p95Ratio),
      trainerCpuShare: round(share),
      firstStep: { p50IdleMs: round(percentile(firsts(idle), 0.5), 2), p95IdleMs: round(firstP95Idle, 2), p50TrainingMs: head.firstStepP50Ms, p95TrainingMs: head.firstStepP95Ms, p95Ratio: head.firstStepP95Ratio },
      p95IdlePerWindow: idle.map(w => round(percentile([...w.first, ...w.steps], 0.95), 2)),
      byTrainer,
      goals: { p95RatioAtMost110: p95Ratio <= 1.1, trainerCpuShareAtLeast80: share >= 0.8 }
    }
  } finally {
    await inference.stop().catch(() => {})
    await store.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}
