/** The speculative-decoding part of a `generate` request (params `draft` and `speculate`), checked. */
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import { SPECULATIVE_DEFAULTS } from './speculative.ts'

export interface Speculation {
  /** the draft model (id or prefix) */
  draft: string
  /** draft tokens per round to start with */
  k: number
}

/** null when the request asks for no speculation; throws on `speculate` without `draft` or a bad k. */
export function speculationOf (params: { draft?: string, speculate?: number }): Speculation | null {
  if (params.draft == null) {
    if (params.speculate != null) {
      throw new ModelError(ModelErrorCode.BAD_OPTIONS, 'speculate needs a draft model (--draft MODEL)')
    }
    return null
  }
  const k = params.speculate ?? SPECULATIVE_DEFAULTS.k
  if (!Number.isSafeInteger(k) || k < 1 || k > 64) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `speculate must be an integer in [1, 64] (got ${String(k)})`)
  }
  return { draft: params.draft, k }
}
