/**
 * The webgpu backend for a test, or a failure naming why and how to install
 * the software adapter: never a skip (in CI, CI=true, the webgpu tests must
 * fail when the adapter is missing).
 */
import { selectBackend } from '../../src/model/backend.ts'
import type { BackendSelection } from '../../src/model/backend.ts'

export const WEBGPU_INSTALL_HINT = 'no usable WebGPU adapter. Without a GPU install a software Vulkan driver Dawn accepts (Debian 12: add bookworm-backports to the Suites: line of /etc/apt/sources.list.d/debian.sources, then apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1; .ci/run does this)'

/** selectBackend('webgpu'), or an error naming why and how to install the software adapter. */
export async function requireWebGpu (): Promise<BackendSelection> {
  try {
    return await selectBackend('webgpu')
  } catch (err: any) {
    throw new Error(`${WEBGPU_INSTALL_HINT}${process.env.CI === 'true' ? ' [CI=true]' : ''}: ${String(err?.message ?? err)}`)
  }
}
