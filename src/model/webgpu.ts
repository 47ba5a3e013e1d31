/**
 * The `webgpu` tfjs backend on Dawn's Node binding (npm `webgpu`, an optional
 * dependency, as is `@tensorflow/tfjs-backend-webgpu`): finds an adapter,
 * opens one device with the adapter's own limits and registers tfjs's
 * WebGPU backend on it. One device per process (tfjs's engine is process-wide
 * state), so once started the backend is reused; worker threads are refused
 * on it (workers.ts). Float32 only, as the layer math is.
 *
 * A software (fallback) adapter such as Mesa's lavapipe is used only when
 * `allowSoftware` is set (`--backend webgpu` named explicitly, or the
 * BLYD_WEBGPU_SOFTWARE=1 opt-in under `auto`): under `auto` it would be
 * slower than wasm.
 */
import { tf } from './qwen3/tf.ts'
import type { WebGpuAdapterInfo } from './webgpu-adapter.ts'

export type { WebGpuAdapterInfo } from './webgpu-adapter.ts'

export interface StartWebGpuOptions {
  /** accept a fallback (software) adapter */
  allowSoftware?: boolean
}

/** The environment opt-in for a software adapter under `auto`. */
export const WEBGPU_SOFTWARE_ENV = 'BLYD_WEBGPU_SOFTWARE'

/** Thrown (as a plain Error, recorded in `tried`) with the reason the adapter was not used. */
export class WebGpuUnavailableError extends Error {
  readonly code = 'ERR_WEBGPU_UNAVAILABLE'
  /** the adapter found, when one was found but refused */
  readonly adapter?: WebGpuAdapterInfo

  constructor (message: string, adapter?: WebGpuAdapterInfo) {
    super(message)
    this.name = 'WebGpuUnavailableError'
    this.adapter = adapter
  }
}

interface GpuAdapterLike {
  info?: Record<string, unknown>
  isFallbackAdapter?: boolean
  limits: Record<string, number>
  features: { has(name: string): boolean }
  requestDevice(desc: unknown): Promise<GpuDeviceLike>
}

interface GpuDeviceLike {
  limits: Record<string, number>
  adapterInfo?: Record<string, unknown>
  lost?: Promise<unknown>
}

/** the webgpu backend instance tfjs holds, as far as blyd reads it */
interface WebGpuBackendLike {
  device?: GpuDeviceLike
  blydAdapter?: WebGpuAdapterInfo
}

function adapterInfoOf (info: Record<string, unknown> | undefined, fallback: boolean, limits: Record<string, number>): WebGpuAdapterInfo {
  const str = (k: string): string => typeof info?.[k] === 'string' ? info[k] : ''
  return {
    vendor: str('vendor'),
    architecture: str('architecture'),
    device: str('device'),
    description: str('description'),
    fallback,
    limits: {
      maxBufferSize: Number(limits.maxBufferSize ?? 0),
      maxStorageBufferBindingSize: Number(limits.maxStorageBufferBindingSize ?? 0)
    }
  }
}

/** The adapter of the webgpu backend when tfjs has one started, else undefined. */
export function runningWebGpuAdapter (): WebGpuAdapterInfo | undefined {
  const backend = tf.findBackend('webgpu') as WebGpuBackendLike | null
  return backend?.blydAdapter
}

/**
 * Starts (or reuses) the webgpu backend and makes it tfjs's current one.
 * Throws with the reason when a package is missing, no adapter is found, the
 * adapter is a software one not allowed, or the device cannot be opened.
 */
export async function startWebGpu (options: StartWebGpuOptions = {}): Promise<WebGpuAdapterInfo> {
  const running = runningWebGpuAdapter()
  if (running != null) {
    if (running.fallback && options.allowSoftware !== true) {
      throw new WebGpuUnavailableError(softwareRefusal(running), running)
    }
    if (!await tf.setBackend('webgpu')) {
      throw new Error('webgpu backend did not initialise')
    }
    await tf.ready()
    return running
  }
  const dawn = await import('webgpu')
  // imported before navigator.gpu exists, so the package does not register its own factory
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu')
  const gpu = dawn.create([])
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }) as unknown as GpuAdapterLike | null
  if (adapter == null) {
    throw new WebGpuUnavailableError('no WebGPU adapter (no Vulkan driver found: install libvulkan1 and the GPU\'s Vulkan ICD, or mesa-vulkan-drivers >= 25 for the software one)')
  }
  const fallback = adapter.isFallbackAdapter === true || adapter.info?.isFallbackAdapter === true
  const found = adapterInfoOf(adapter.info, fallback, adapter.limits)
  if (fallback && options.allowSoftware !== true) {
    throw new WebGpuUnavailableError(softwareRefusal(found), found)
  }
  const l = adapter.limits
  const requiredFeatures = adapter.features.has('timestamp-query') ? ['timestamp-query'] : []
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup
    }
  })
  const info = adapterInfoOf(adapter.info, fallback, device.limits)
  // tfjs's backend checks navigator.gpu; Node >= 21 has a navigator object
  const nav = ((globalThis as any).navigator ??= {}) as { gpu?: unknown }
  nav.gpu ??= gpu
  for (const [k, v] of Object.entries(dawn.globals as Record<string, unknown>)) {
    (globalThis as any)[k] ??= v
  }
  if (tf.findBackendFactory('webgpu') != null) {
    tf.removeBackend('webgpu')
  }
  tf.registerBackend('webgpu', () => {
    const backend = new WebGPUBackend(device as any, adapter.info as any)
    return Object.assign(backend, { blydAdapter: info })
  }, 0)
  if (!await tf.setBackend('webgpu')) {
    throw new Error('webgpu backend did not initialise')
  }
  await tf.ready()
  return info
}

function softwareRefusal (a: WebGpuAdapterInfo): string {
  return `only a software adapter (${a.vendor} ${a.device || a.description}); used only with --backend webgpu or ${WEBGPU_SOFTWARE_ENV}=1`
}
