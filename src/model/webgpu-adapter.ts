import { existsSync, readdirSync } from 'node:fs'

/** A WebGPU adapter as blyd reports it (no tfjs import: the CLI formats it). */
export interface WebGpuAdapterInfo {
  vendor: string
  architecture: string
  device: string
  description: string
  /** Dawn's isFallbackAdapter: a software rasteriser (lavapipe, SwiftShader) */
  fallback: boolean
  /** the device's limits that bound blyd's buffers */
  limits: {
    maxBufferSize: number
    maxStorageBufferBindingSize: number
  }
}

/** One line naming the adapter, for logs and `status`. */
export function describeAdapter (a: WebGpuAdapterInfo): string {
  const mib = (n: number): string => `${Math.floor(n / 2 ** 20)} MiB`
  return `${a.vendor || 'unknown vendor'} ${a.architecture || '-'} ${a.device || a.description || '-'}${a.fallback ? ' (software)' : ''}, max buffer ${mib(a.limits.maxBufferSize)}, max storage binding ${mib(a.limits.maxStorageBufferBindingSize)}`
}

/**
 * The adapter as the node record carries it (field 16): "vendor architecture
 * device", printable ASCII, single spaces, at most 128 bytes; '' for none.
 */
export function recordAdapterName (a: WebGpuAdapterInfo | undefined): string {
  if (a == null) {
    return ''
  }
  const name = [a.vendor, a.architecture, a.device || a.description, a.fallback ? '(software)' : '']
    .join(' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/ +/g, ' ')
    .trim()
  return name.slice(0, 128).trim()
}

/**
 * Whether this machine shows a GPU device node: NVIDIA's (/dev/nvidiactl) or
 * a DRM render node (/dev/dri/renderD*, every Mesa hardware driver). Under
 * `auto`, webgpu is probed only when one exists: without one only a
 * software adapter could answer, which auto refuses anyway, and opening Dawn
 * costs start-up time and prints its warnings on stderr. Off Linux: true (probe).
 */
export function hasGpuDeviceNode (platform: string = process.platform, exists: (path: string) => boolean = existsSync, list: (dir: string) => string[] = safeReaddir): boolean {
  if (platform !== 'linux') {
    return true
  }
  return exists('/dev/nvidiactl') || list('/dev/dri').some(name => name.startsWith('renderD'))
}

function safeReaddir (dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}
