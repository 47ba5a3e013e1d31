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
