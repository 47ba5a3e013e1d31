/**
 * How many tensor-parallel worker threads a LayerRange runs its decoder
 * layers on (LayerRangeInit.workers). The setting is `auto` or a count;
 * `auto` uses every core when the model's layers are big enough for the
 * per-layer messages to pay (measured with `npm run bench -- workers`,
 * docs/inference-performance.md), else the calling thread.
 */
import { availableParallelism } from 'node:os'
import { ModelError, ModelErrorCode } from './errors.ts'
import type { Qwen3Config } from './qwen3/config.ts'

export type WorkersSetting = 'auto' | number

/** the most worker threads a setting may name */
export const MAX_WORKERS = 64

/**
 * `auto` runs worker threads only for layers at least this wide (hidden
 * size). Below it the two messages per layer and worker cost more than the
 * halved weight reads save (docs/inference-performance.md, "workers: auto"):
 * 4096 is the smallest width measured as a clear win (x1.64); 2048 measured
 * x0.56-0.95, so it stays on the main thread until a run shows a gain.
 */
export const AUTO_WORKERS_MIN_HIDDEN = 4096

/** Parses a configured value: 'auto', an integer 0..MAX_WORKERS, or its decimal string. */
export function parseWorkersSetting (value: unknown): WorkersSetting | undefined {
  if (value === 'auto') {
    return 'auto'
  }
  const n = typeof value === 'string' && /^\d{1,3}$/.test(value.trim()) ? Number(value.trim()) : value
  if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= MAX_WORKERS) {
    return n
  }
  return undefined
}

export interface ResolveWorkersOptions {
  /** the tfjs backend running ('tensorflow', 'webgpu', 'wasm', 'cpu') */
  backend: string | null
  /** cores to use under `auto`, default os.availableParallelism() */
  cores?: number
}

/**
 * The worker count for a model's layers. A count is used as given (0: the
 * calling thread; LayerRange.load checks that kv heads and the intermediate
 * size divide by it). `auto` gives 0 for narrow layers, on the native
 * tensorflow backend (multi-threaded already), on webgpu (one device per
 * process: a count > 0 is refused there) and on one core; otherwise the
 * largest count <= cores that kv heads and the intermediate size divide by.
 */
export function resolveWorkers (setting: WorkersSetting, config: Qwen3Config, options: ResolveWorkersOptions): number {
  if (setting !== 'auto') {
    if (!Number.isSafeInteger(setting) || setting < 0 || setting > MAX_WORKERS) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `workers must be "auto" or an integer from 0 to ${MAX_WORKERS} (got ${String(setting)})`)
    }
    if (setting > 0 && options.backend === 'webgpu') {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `workers ${setting} cannot run on webgpu (one GPU device per process, no worker threads): use --workers 0 or auto`)
    }
    return setting
  }
  const cores = Math.min(options.cores ?? availableParallelism(), MAX_WORKERS)
  if (options.backend === 'tensorflow' || options.backend === 'webgpu' || cores < 2 || config.hiddenSize < AUTO_WORKERS_MIN_HIDDEN) {
    return 0
  }
  for (let n = cores; n >= 2; n--) {
    if (config.numKvHeads % n === 0 && config.intermediateSize % n === 0) {
      return n
    }
  }
  return 0
}
