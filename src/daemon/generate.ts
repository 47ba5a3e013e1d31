/**
 * The daemon's one `generate`, called by IPC `generate` and by the HTTP API
 * alike: the generation runs where the mesh decides (in this process, or
 * through peers' spans), is counted in the daemon's metrics (tokens as they
 * stream, the generation when it ends, with where it ran and why it ended,
 * the BUSY answers it met), and a failure to find layers is explained by
 * what this node lacks (explainIncomplete). It yields to the event loop
 * after each token, so a long local generation does not starve the
 * daemon's other connections.
 */
import { setImmediate } from 'node:timers/promises'
import { MeshErrorCode } from '../mesh/errors.ts'
import { incompleteModelError, loadModelManifest, missingUnits, resolveModelId } from '../model/chain-loader.ts'
import { ModelErrorCode } from '../model/errors.ts'
import { BlydError } from '../protocols/errors.ts'
import type { DaemonMetrics } from './metrics.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { GenerateParams, GenerateResult, GenerateTokenJson } from '../protocols/ipc.ts'

export type GenerateFn = (params: GenerateParams, onToken?: (t: GenerateTokenJson) => void | Promise<void>, signal?: AbortSignal) => Promise<GenerateResult>

/** `run` counted in `metrics`: sessions running, tokens, generations by via and finish reason (error when it throws), BUSY waits. */
export function meteredGenerate (run: GenerateFn, metrics: DaemonMetrics): GenerateFn {
  return async (params, onToken, signal) => {
    metrics.generateSessions.inc()
    try {
      const result = await run(params, async t => {
        metrics.tokensGenerated.inc()
        await onToken?.(t)
        // a local step on the main thread may never leave the microtask queue (tfjs resolves its reads
        // at once): yield, so the daemon's sockets (IPC, HTTP, libp2p) are served between two tokens
        await setImmediate()
      }, signal)
      metrics.generations.inc({ via: result.via ?? 'local', finish_reason: result.finishReason })
      if (result.busyWaits != null && result.busyWaits > 0) {
        metrics.busyWaits.inc(result.busyWaits)
      }
      return result
    } catch (err) {
      metrics.generations.inc({ via: 'unknown', finish_reason: 'error' })
      throw err
    } finally {
      metrics.generateSessions.dec()
    }
  }
}

/** errors of a generation that found no layers to run, locally or at a peer */
const NO_LAYERS: ReadonlySet<string> = new Set([MeshErrorCode.NO_ROUTE, MeshErrorCode.UNAVAILABLE, ModelErrorCode.BLOCK_MISSING])

/**
 * A generation through the mesh runs where the layers are: a node missing
 * some units (e.g. after a crash mid-import) may still generate through
 * peers. When it cannot, the reason to give is the local one: the model is
 * incomplete here, with the units named (ERR_MODEL_INCOMPLETE, the mesh's
 * error as its cause). Other errors pass unchanged.
 */
export async function explainIncomplete (store: ChainStoreApi, model: string, err: unknown): Promise<unknown> {
  if (!(err instanceof BlydError) || !NO_LAYERS.has(err.code)) {
    return err
  }
  try {
    const manifest = await loadModelManifest(store, await resolveModelId(store, model))
    const missing = await missingUnits(store, manifest)
    if (missing.length === 0) {
      return err
    }
    return incompleteModelError(manifest, missing, `, and no peer serves what is missing (${err.message})`, err)
  } catch {
    return err
  }
}

/** `run` whose failures to find layers are explained by explainIncomplete. */
export function explainedGenerate (run: GenerateFn, store: () => ChainStoreApi): GenerateFn {
  return async (params, onToken, signal) => {
    try {
      return await run(params, onToken, signal)
    } catch (err) {
      throw await explainIncomplete(store(), params.model, err)
    }
  }
}
