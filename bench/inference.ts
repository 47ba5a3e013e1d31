// Inference bench: one Qwen3-8B-shaped decoder layer (hidden 4096,
// intermediate 12288, 32/8 heads, head_dim 128, random weights) through the
// real LayerRange code path, against floors measured in the same run:
//   decode floor  = the layer's float32 weight bytes / memory bandwidth
//                   (best multi-threaded numpy sgemv over a 1 GiB matrix:
//                   the machine's achievable streaming-read rate)
//   prefill floor = the layer's FLOPs / numpy (OpenBLAS) sgemm rate
// Bandwidth and sgemm are measured before and after the layer runs and the
// best of each is used (the strictest floor). Prints human lines, then one
// JSON object as the last line.
//
//   npm run bench -- inference [--workers N] [--prefill 512] [--steps 24] [--backend wasm]
//                              [--gpu-bandwidth-gbs N] [--gpu-tflops N]
//
// --workers 0 runs the layer on the main thread (no tensor parallelism).
// --backend webgpu: the layer on the WebGPU adapter (Dawn), main thread only.
// On a software adapter (lavapipe: it runs on this CPU) the CPU floors stand;
// on a hardware adapter WebGPU reports no memory bandwidth or FLOP rate, so
// the floors come from --gpu-bandwidth-gbs / --gpu-tflops (the datasheet's
// figures, named in the JSON) and are null without them.
import { spawnSync } from 'node:child_process'
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/model/backend.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { LayerRange } from '../src/model/qwen3/layer-range.ts'
import { describeAdapter } from '../src/model/webgpu-adapter.ts'
import { MapWeightSource } from '../src/model/weight-source.ts'
import { randomLayer } from './lib/random-layer.ts'
import type { BackendPreference } from '../src/model/backend.ts'

const { values: opts } = parseArgs({
  options: {
    workers: { type: 'string' },
    prefill: { type: 'string', default: '512' },
    steps: { type: 'string', default: '24' },
    backend: { type: 'string', default: 'wasm' },
    'gpu-bandwidth-gbs': { type: 'string' },
    'gpu-tflops': { type: 'string' }
  }
})

const WORKERS = Number(opts.workers ?? (opts.backend === 'webgpu' ? 0 : availableParallelism()))
const GPU_BANDWIDTH_GBS = opts['gpu-bandwidth-gbs'] != null ? Number(opts['gpu-bandwidth-gbs']) : undefined
const GPU_TFLOPS = opts['gpu-tflops'] != null ? Number(opts['gpu-tflops']) : undefined
const PREFILL = Number(opts.prefill)
const STEPS = Number(opts.steps)

const CONFIG = parseQwen3Config({
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 12288,
  num_hidden_layers: 1,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960
})

function say (line: string): void {
  process.stdout.write(line + '\n')
}

interface NativeRates {
  /** multi-threaded sgemv over a 1 GiB float32 matrix: matrix bytes / best time */
  sgemvGBs: number
  /** single-threaded numpy sum over the same matrix, for reference */
  sumGBs: number
  /** sgemm 4096 x 4096 x 4096, best of several */
  sgemmGflops: number
  blas: string
}

const NATIVE_SCRIPT = `
import json, time
import numpy as np
def best(f, n):
    b = 1e9
    for _ in range(n):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b
a = np.random.default_rng(1).random((16384, 16384), dtype=np.float32)
x = np.ones(16384, dtype=np.float32)
gemv = best(lambda: a @ x, 10)
total = best(lambda: a.sum(), 4)
del a
m = np.random.default_rng(2).random((4096, 4096), dtype=np.float32)
m @ m
gemm = best(lambda: m @ m, 5)
try:
    blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
    blas = blas.get('name', '?') + ' ' + blas.get('version', '')
except Exception:
    blas = 'unknown'
print(json.dumps({'sgemvGBs': 16384 * 16384 * 4 / gemv / 1e9, 'sumGBs': 16384 * 16384 * 4 / total / 1e9, 'sgemmGflops': 2 * 4096 ** 3 / gemm / 1e9, 'blas': blas}))
`

function measureNative (): NativeRates {
  const r = spawnSync('python3', ['-c', NATIVE_SCRIPT], { encoding: 'utf8', timeout: 180_000 })
  if (r.status !== 0) {
    throw new Error(`python3/numpy measurement failed: ${r.error?.message ?? r.stderr}`)
  }
  return JSON.parse(r.stdout.trim().split('\n').pop() as string)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

function fmt (x: number, digits = 1): string {
  return x.toFixed(digits)
}

const load0 = loadavg()[0]
say(`machine: ${availableParallelism()} cores, load average ${fmt(load0, 2)}`)
if (load0 > availableParallelism() / 2) {
  say('WARNING: the machine is busy; every figure below (floors included) is skewed by the other work')
}
say('measuring native bandwidth and sgemm (python3 + numpy) ...')
const nativeBefore = measureNative()
say(`  numpy (${nativeBefore.blas}): sgemv 1 GiB ${fmt(nativeBefore.sgemvGBs)} GB/s, single-thread sum ${fmt(nativeBefore.sumGBs)} GB/s, sgemm ${fmt(nativeBefore.sgemmGflops)} GFLOP/s`)

const sel = await selectBackend(opts.backend as BackendPreference)
say(`backend ${sel.name}${sel.features != null ? ` (simd ${String(sel.features.simd)}, wasm threads ${String(sel.features.threads)})` : ''}${sel.adapter != null ? ` on ${describeAdapter(sel.adapter)}` : ''}, ${WORKERS === 0 ? 'main thread' : `${WORKERS} worker threads (tensor parallel)`}`)
/** a hardware GPU: the CPU's numpy rates are no floor for it */
const onGpu = sel.adapter != null && !sel.adapter.fallback

const { tensors, params, linearParams } = randomLayer(CONFIG)
const layerBytes = params * 4
let t0 = performance.now()
const layer = await LayerRange.load(CONFIG, new MapWeightSource(tensors, 'random'), { start: 0, end: 1, workers: WORKERS === 0 ? undefined : WORKERS })
tensors.clear()
say(`layer: ${fmt(params / 1e6)} M params, ${fmt(layerBytes / 1e6)} MB float32, loaded in ${fmt((performance.now() - t0) / 1000, 2)} s`)

const { hiddenSize: h, numHeads: nH, headDim: d } = CONFIG
function randomHidden (t: number): Float32Array {
  const x = new Float32Array(t * h)
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.37) * 0.5
  }
  return x
}

const session = layer.createSession()
// warm-up: first use packs the weights (XNNPACK) and builds the RoPE table
await layer.forwardData(session, randomHidden(8))
await layer.forwardData(session, randomHidden(1))
session.truncate(0)

// (b) prefill: PREFILL positions from an empty cache, best of 2
const prefillRuns: number[] = []
for (let i = 0; i < 2; i++) {
  session.truncate(0)
  const x = randomHidden(PREFILL)
  t0 = performance.now()
  await layer.forwardData(session, x)
  prefillRuns.push(performance.now() - t0)
}
const prefillMs = Math.min(...prefillRuns)

// (a) decode: STEPS single positions after the prefill (context PREFILL..PREFILL+STEPS)
const decodeRuns: number[] = []
for (let i = 0; i < STEPS; i++) {
  const x = randomHidden(1)
  t0 = performance.now()
  await layer.forwardData(session, x)
  decodeRuns.push(performance.now() - t0)
}
const decodeMs = median(decodeRuns)
const decodeBestMs = Math.min(...decodeRuns)
session.dispose()
await layer.close()

say('measuring native bandwidth and sgemm again ...')
const nativeAfter = measureNative()
say(`  numpy: sgemv 1 GiB ${fmt(nativeAfter.sgemvGBs)} GB/s, single-thread sum ${fmt(nativeAfter.sumGBs)} GB/s, sgemm ${fmt(nativeAfter.sgemmGflops)} GFLOP/s`)

const cpuBandwidthGBs = Math.max(nativeBefore.sgemvGBs, nativeAfter.sgemvGBs)
const cpuBlasGflops = Math.max(nativeBefore.sgemmGflops, nativeAfter.sgemmGflops)
// on a hardware GPU the floors are the datasheet figures given, else NaN (null in the JSON)
const bandwidthGBs = onGpu ? (GPU_BANDWIDTH_GBS ?? NaN) : cpuBandwidthGBs
const gpuGflops = GPU_TFLOPS != null ? GPU_TFLOPS * 1000 : NaN
const blasGflops = onGpu ? gpuGflops : cpuBlasGflops
const decodeFloorMs = layerBytes / (bandwidthGBs * 1e9) * 1000
// linear layers 2 * T * params, plus causal attention: QK^T and PV over T(T+1)/2 (query, key) pairs per head
const prefillFlops = 2 * PREFILL * linearParams + 2 * 2 * nH * d * (PREFILL * (PREFILL + 1) / 2)
const prefillFloorMs = prefillFlops / (blasGflops * 1e9) * 1000
const decodeRatio = decodeMs / decodeFloorMs
const prefillRatio = prefillMs / prefillFloorMs

say('')
say(`decode  (context ${PREFILL}..${PREFILL + STEPS}, median of ${STEPS}): ${fmt(decodeMs, 2)} ms/step (best ${fmt(decodeBestMs, 2)}), floor ${fmt(decodeFloorMs, 2)} ms = ${fmt(layerBytes / 1e6)} MB / ${fmt(bandwidthGBs)} GB/s -> ${fmt(decodeRatio, 2)}x floor`)
say(`prefill (${PREFILL} positions, best of 2): ${fmt(prefillMs)} ms = ${fmt(prefillFlops / prefillMs / 1e6)} GFLOP/s, floor ${fmt(prefillFloorMs)} ms = ${fmt(prefillFlops / 1e9)} GFLOP / ${fmt(blasGflops)} GFLOP/s -> ${fmt(prefillRatio, 2)}x floor`)
say(`load average now ${fmt(loadavg()[0], 2)} (was ${fmt(load0, 2)}): other work on the machine skews both sides`)

function gpuBandwidthMethod (): string {
  return GPU_BANDWIDTH_GBS != null
    ? 'the GPU\'s memory bandwidth as given by --gpu-bandwidth-gbs (its datasheet figure; WebGPU does not report it)'
    : 'none: a hardware GPU, and WebGPU does not report its memory bandwidth (give --gpu-bandwidth-gbs)'
}

function gpuBlasMethod (): string {
  return GPU_TFLOPS != null ? 'the GPU\'s float32 rate as given by --gpu-tflops (its datasheet figure)' : 'none: a hardware GPU (give --gpu-tflops)'
}

/** a figure for the JSON: null when it is not known (NaN) */
function num (x: number, digits: number): number | null {
  return Number.isFinite(x) ? Number(fmt(x, digits)) : null
}

process.stdout.write(JSON.stringify({
  decodeMs: Number(fmt(decodeMs, 3)),
  decodeBestMs: Number(fmt(decodeBestMs, 3)),
  decodeFloorMs: num(decodeFloorMs, 3),
  decodeRatio: num(decodeRatio, 3),
  decodeContext: PREFILL,
  prefillMs: Number(fmt(prefillMs, 1)),
  prefillFloorMs: num(prefillFloorMs, 1),
  prefillRatio: num(prefillRatio, 2),
  prefillPositions: PREFILL,
  prefillGflop: Number(fmt(prefillFlops / 1e9, 2)),
  layerBytes,
  bandwidthGBs: num(bandwidthGBs, 2),
  bandwidthMethod: onGpu
    ? gpuBandwidthMethod()
    : `best of 10 numpy float32 sgemv (multi-threaded OpenBLAS) over a 16384x16384 (1 GiB) matrix, measured before and after the layer runs, max taken${sel.adapter != null ? ' (the software adapter runs on this CPU)' : ''}`,
  singleThreadSumGBs: Number(fmt(Math.max(nativeBefore.sumGBs, nativeAfter.sumGBs), 2)),
  blasGflops: num(blasGflops, 1),
  blasMethod: onGpu
    ? gpuBlasMethod()
    : `best of 5 numpy float32 4096^3 matmul (${nativeBefore.blas}), before and after, max taken`,
  cpuBandwidthGBs: Number(fmt(cpuBandwidthGBs, 2)),
  cpuBlasGflops: Number(fmt(cpuBlasGflops, 1)),
  adapter: sel.adapter ?? null,
  backend: sel.name,
  features: { ...(sel.features ?? {}), workers: WORKERS, cores: availableParallelism() },
  hugePages: sel.hugePages ?? null,
  loadAverage: [Number(fmt(load0, 2)), Number(fmt(loadavg()[0], 2))]
}) + '\n')
