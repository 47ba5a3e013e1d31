import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { ModelError, ModelErrorCode } from './errors.ts'
import { adviseWasmHugePages } from './huge-pages.ts'
import { tf } from './qwen3/tf.ts'
import { hasGpuDeviceNode } from './webgpu-adapter.ts'
import { startWebGpu, WEBGPU_SOFTWARE_ENV } from './webgpu.ts'
import type { HugePagesStatus } from './huge-pages.ts'
import type { WebGpuAdapterInfo } from './webgpu.ts'

export const BackendName = {
  AUTO: 'auto',
  TENSORFLOW: 'tensorflow',
  WEBGPU: 'webgpu',
  WASM: 'wasm',
  CPU: 'cpu'
} as const

export type BackendPreference = typeof BackendName[keyof typeof BackendName]

export interface BackendAttempt {
  /** package or backend tried: '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', 'wasm', 'cpu' */
  name: string
  ok: boolean
  reason?: string
  /** webgpu: the adapter found (also when it was refused, e.g. a software one under auto) */
  adapter?: WebGpuAdapterInfo
}

export interface BackendSelection {
  /** the tfjs backend now active: 'tensorflow', 'webgpu', 'wasm' or 'cpu' */
  name: string
  /** webgpu only: the adapter and the device limits that bound buffer sizes */
  adapter?: WebGpuAdapterInfo
  /** wasm only: SIMD and threads as detected */
  features?: { simd: boolean, threads: boolean, threadCount: number }
  /** wasm only: whether the wasm memory (the weights) sits on transparent huge pages (huge-pages.ts) */
  hugePages?: HugePagesStatus
  tried: BackendAttempt[]
}

export interface SelectBackendOptions {
  /** wasm threads to ask for when the runtime supports them (default: all cores) */
  threads?: number
  /** wasm: advise huge pages for the wasm memory (default true; huge-pages.ts) */
  hugePages?: boolean
  /**
   * webgpu: accept a software (fallback) adapter such as lavapipe. Default:
   * true when webgpu is asked for by name, else whether the environment sets
   * BLYD_WEBGPU_SOFTWARE=1 (under auto a software adapter is slower than wasm).
   */
  allowSoftwareAdapter?: boolean
  /**
   * webgpu under auto without a software opt-in: whether a GPU device node
   * exists (webgpu-adapter.ts hasGpuDeviceNode); without one Dawn is not opened
   */
  hasGpuDeviceNode?(): boolean
}

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const

/**
 * Activates the best available tfjs backend for `preference`:
 * auto = tfjs-node-gpu -> tfjs-node -> webgpu (a hardware adapter) -> wasm
 * -> cpu. Packages that are not
 * installed fail gracefully and their reason is recorded in `tried`.
 * An explicit preference that cannot start throws ERR_BACKEND_UNAVAILABLE.
 */
export async function selectBackend (preference: BackendPreference = 'auto', options: SelectBackendOptions = {}): Promise<BackendSelection> {
  if (!Object.values(BackendName).includes(preference)) {
    throw new ModelError(ModelErrorCode.BACKEND_UNAVAILABLE, `unknown backend ${JSON.stringify(preference)}, expected auto, tensorflow, webgpu, wasm or cpu`)
  }
  const tried: BackendAttempt[] = []
  if (preference === 'auto' || preference === 'tensorflow') {
    for (const pkg of NATIVE_PACKAGES) {
      try {
        await import(pkg)
        if (!await tf.setBackend('tensorflow')) {
          throw new Error('package loaded but the tensorflow backend did not initialise')
        }
        await tf.ready()
        tried.push({ name: pkg, ok: true })
        return { name: 'tensorflow', tried }
      } catch (err: any) {
        tried.push({ name: pkg, ok: false, reason: reasonOf(err) })
      }
    }
  }
  if (preference === 'auto' || preference === 'webgpu') {
    const started = await tryWebGpu(preference, options, tried)
    if (started != null) {
      return started
    }
  }
  if (preference === 'auto' || preference === 'wasm') {
    try {
      const { hugePages, ...features } = await startWasm(options)
      tried.push({ name: 'wasm', ok: true })
      return { name: 'wasm', features, hugePages, tried }
    } catch (err: any) {
      tried.push({ name: 'wasm', ok: false, reason: reasonOf(err) })
    }
  }
  if (preference === 'auto' || preference === 'cpu') {
    try {
      if (!await tf.setBackend('cpu')) {
        throw new Error('cpu backend did not initialise')
      }
      await tf.ready()
      tried.push({ name: 'cpu', ok: true })
      return { name: 'cpu', tried }
    } catch (err: any) {
      tried.push({ name: 'cpu', ok: false, reason: reasonOf(err) })
    }
  }
  const err = new ModelError(ModelErrorCode.BACKEND_UNAVAILABLE, `backend ${preference} unavailable: ${tried.map(t => `${t.name}: ${t.reason ?? 'failed'}`).join('; ')}`)
  Object.assign(err, { tried })
  throw err
}

async function startWasm (options: SelectBackendOptions): Promise<{ simd: boolean, threads: boolean, threadCount: number, hugePages: HugePagesStatus }> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm')
  const require = createRequire(import.meta.url)
  // the .wasm binaries sit in the package's dist folder; point tfjs at them on disk
  const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/'
  wasm.setWasmPaths(dist)
  // false on Node today: the threaded build needs web workers with cross-origin isolation
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT') as boolean
  if (threads) {
    wasm.setThreadsCount(options.threads ?? (await import('node:os')).availableParallelism())
  }
  if (!await tf.setBackend('wasm')) {
    throw new Error('wasm backend did not initialise')
  }
  await tf.ready()
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT') as boolean
  // before any weights are uploaded: the pages they land on are huge from the first touch
  const memory = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.buffer
  const hugePages = adviseWasmHugePages(memory instanceof ArrayBuffer ? memory : undefined, { off: options.hugePages === false })
  return { simd, threads, threadCount: wasm.getThreadsCount(), hugePages }
}

/** webgpu: the selection when it starts, else undefined with the reason (and any adapter found) in `tried` */
async function tryWebGpu (preference: BackendPreference, options: SelectBackendOptions, tried: BackendAttempt[]): Promise<BackendSelection | undefined> {
  const allowSoftware = options.allowSoftwareAdapter ?? (preference === 'webgpu' || process.env[WEBGPU_SOFTWARE_ENV] === '1')
  if (!allowSoftware && !(options.hasGpuDeviceNode ?? hasGpuDeviceNode)()) {
    tried.push({ name: 'webgpu', ok: false, reason: `no GPU device node (/dev/nvidiactl, /dev/dri/renderD*), so not probed: only a software adapter could answer; used only with --backend webgpu or ${WEBGPU_SOFTWARE_ENV}=1` })
    return undefined
  }
  try {
    const adapter = await startWebGpu({ allowSoftware })
    tried.push({ name: 'webgpu', ok: true, adapter })
    return { name: 'webgpu', adapter, tried }
  } catch (err: any) {
    tried.push({ name: 'webgpu', ok: false, reason: webgpuReasonOf(err), ...(err?.adapter != null ? { adapter: err.adapter } : {}) })
    return undefined
  }
}

/** why webgpu did not start, with the install hint when a package is missing */
function webgpuReasonOf (err: any): string {
  if (err?.code === 'ERR_MODULE_NOT_FOUND') {
    return 'not installed (optional dependencies webgpu and @tensorflow/tfjs-backend-webgpu)'
  }
  return reasonOf(err)
}

function reasonOf (err: any): string {
  if (err?.code === 'ERR_MODULE_NOT_FOUND') {
    return 'not installed'
  }
  return String(err?.message ?? err).split('\n')[0]
}
