/**
 * Transparent huge pages for the wasm backend's memory, through blyd's
 * optional native helper (native/huge-pages.c, built at install by
 * scripts/build-native.js). V8 maps WebAssembly memory with 4 KiB pages and
 * never advises huge pages; where the kernel's THP mode is `madvise` (the
 * default of many distributions) a stage's weights then take one TLB entry
 * per 4 KiB and every decode step walks the page tables of all of them, and
 * again from cold after the stage idled between its turns. Measured in
 * docs/inference-performance.md ("Huge pages").
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { HugePagesStatusJson, ThpMode } from '../protocols/ipc.ts'

export type { ThpMode }
export type HugePagesStatus = HugePagesStatusJson

interface NativeHelper {
  adviseHugePages(buffer: ArrayBuffer, reserveBytes: number): { base: string, length: number, advisedBytes: number, adviseErrno: number, collapseErrno: number }
}

/** wasm32 memories grow to at most 4 GiB; V8 reserves at least that up front */
export const WASM32_MAX_BYTES = 4 * 1024 ** 3

const HELPER_PATH = fileURLToPath(new URL('../../build/huge-pages.node', import.meta.url))

/** Reads the kernel's THP mode (`unknown` off Linux or without the sysfs file). */
export function readThpMode (path = '/sys/kernel/mm/transparent_hugepage/enabled'): ThpMode {
  try {
    const mode = /\[(\w+)\]/.exec(readFileSync(path, 'utf8'))?.[1]
    return mode === 'always' || mode === 'madvise' || mode === 'never' ? mode : 'unknown'
  } catch {
    return 'unknown'
  }
}

/** The native helper, or why it is not there. */
export function loadHugePagesHelper (path = HELPER_PATH): { helper?: NativeHelper, reason?: string } {
  try {
    const helper = createRequire(import.meta.url)(path) as NativeHelper
    if (typeof helper?.adviseHugePages !== 'function') {
      return { reason: `${path} does not export adviseHugePages` }
    }
    return { helper }
  } catch (err: any) {
    return { reason: err?.code === 'MODULE_NOT_FOUND' ? `native helper not built (${path}; npm install builds it with a C compiler)` : `native helper did not load: ${String(err?.message ?? err)}` }
  }
}

/**
 * Advises huge pages for a wasm memory's whole reservation (pages it grows
 * into later are covered too) and collapses what is mapped already. Call it
 * before the weights are loaded. Never throws for lack of support: the
 * status says what holds.
 */
export function adviseWasmHugePages (memory: ArrayBuffer | undefined, options: { thp?: ThpMode, helperPath?: string, off?: boolean } = {}): HugePagesStatus {
  const thp = options.thp ?? readThpMode()
  const { helper, reason } = options.off === true ? { helper: undefined, reason: 'huge pages turned off' } : loadHugePagesHelper(options.helperPath)
  const status = (advisedBytes: number, why?: string): HugePagesStatus => {
    const active = thp === 'always' || (thp === 'madvise' && advisedBytes > 0)
    return { thp, helper: helper != null, advisedBytes, active, ...(active || why == null ? {} : { reason: why }) }
  }
  if (thp === 'never') {
    return status(0, 'the kernel\'s THP mode is never')
  }
  if (helper == null) {
    return status(0, reason)
  }
  if (!(memory instanceof ArrayBuffer)) {
    return status(0, 'no wasm memory to advise')
  }
  const r = helper.adviseHugePages(memory, WASM32_MAX_BYTES)
  return status(r.advisedBytes, r.advisedBytes > 0 ? undefined : `madvise(MADV_HUGEPAGE) failed with errno ${r.adviseErrno}`)
}
