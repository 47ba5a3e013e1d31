/**
 * Eval loss: the mean next-token cross-entropy of a whole model over
 * windows of token ids, one figure per window, computed in float64 from the
 * model's float32 logits:
 *
 * loss(window) = 1/(T-1) x sum_{t=0}^{T-2} ( logsumexp(logits[t]) - logits[t][ids[t+1]] )
 *
 * with logsumexp = max + log(sum exp(x - max)). Each window runs in a fresh
 * session (no context carried between windows).
 */
import { ModelError, ModelErrorCode } from '../model/errors.ts'
import type { LayerRange } from '../model/qwen3/layer-range.ts'

/** Mean next-token cross-entropy (nats) of `logits` ([T, vocab] row-major) against ids[1..T-1]. */
export function windowCrossEntropy (logits: Float32Array, vocab: number, ids: ArrayLike<number>): number {
  const t = ids.length
  if (t < 2) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `a window needs at least 2 tokens, got ${t}`)
  }
  if (logits.length !== t * vocab) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `${logits.length} logits for ${t} positions of ${vocab}`)
  }
  let total = 0
  for (let p = 0; p < t - 1; p++) {
    const o = p * vocab
    let max = -Infinity
    for (let v = 0; v < vocab; v++) {
      if (logits[o + v] > max) {
        max = logits[o + v]
      }
    }
    let sum = 0
    for (let v = 0; v < vocab; v++) {
      sum += Math.exp(logits[o + v] - max)
    }
    const target = ids[p + 1]
    if (!Number.isInteger(target) || target < 0 || target >= vocab) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `token id ${target} is outside the vocabulary [0, ${vocab})`)
    }
    total += max + Math.log(sum) - logits[o + target]
  }
  const loss = total / (t - 1)
  if (!Number.isFinite(loss)) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `the model's logits give a non-finite loss (${loss})`)
  }
  return loss
}

/**
 * Per-window eval loss of `model`, which must hold the whole model
 * (embedding, every layer, head). Windows run one after another, in order.
 */
export async function windowLosses (model: LayerRange, windows: ReadonlyArray<ArrayLike<number>>): Promise<number[]> {
  if (!model.isComplete) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, 'eval loss needs a whole model (embedding, every layer and the head)')
  }
  const vocab = model.config.vocabSize
  const out: number[] = []
  for (const ids of windows) {
    if (ids.length < 2) {
      throw new ModelError(ModelErrorCode.BAD_INPUT, `a window needs at least 2 tokens, got ${ids.length}`)
    }
    const session = model.createSession()
    try {
      const logits = await model.forwardTokensAsync(session, ids)
      try {
        out.push(windowCrossEntropy(await logits.data() as Float32Array, vocab, ids))
      } finally {
        logits.dispose()
      }
    } finally {
      session.dispose()
    }
  }
  return out
}

/** Mean of the per-window losses. */
export function meanLoss (losses: readonly number[]): number {
  if (losses.length === 0) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, 'no windows')
  }
  let s = 0
  for (const l of losses) {
    s += l
  }
  return s / losses.length
}
