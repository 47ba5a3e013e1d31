/**
 * One `generate` request run with speculative decoding: drives
 * speculativeGenerate() over a target and a draft session and turns its
 * tokens into the usual stream (text with stop strings held back, as
 * generate() does) and the `speculative` part of the result.
 */
import { FinishReason, TextStream } from '../model/generate.ts'
import { SPECULATIVE_DEFAULTS, speculativeGenerate } from './speculative.ts'
import type { SpeculativeResult, SpeculativeSession, SpeculativeToken } from './speculative.ts'
import type { FinishReasonValue } from '../model/generate.ts'
import type { SamplingOptions } from '../model/sampling.ts'
import type { GenerateTokenJson, SpeculativeJson } from '../protocols/ipc.ts'

export interface SpeculativeRunInit {
  target: SpeculativeSession
  draft: SpeculativeSession
  prompt: number[]
  /** draft tokens per round to start with; it adapts */
  k: number
  maxNewTokens?: number
  eosTokenIds: number[]
  sampling: SamplingOptions
  decode?(ids: number[]): string
  stop?: string[]
  onToken?(t: GenerateTokenJson): void | Promise<void>
  signal?: AbortSignal
}

export interface SpeculativeRunResult {
  tokens: number[]
  text: string
  finishReason: FinishReasonValue
  speculative: SpeculativeJson
}

export async function runSpeculative (init: SpeculativeRunInit): Promise<SpeculativeRunResult> {
  const stops = (init.stop ?? []).filter(s => s !== '')
  const decode = init.decode
  const text = new TextStream(decode, decode != null ? stops : [])
  const counted = { rounds: 0, proposed: 0, accepted: 0, k: init.k }
  const it = speculativeGenerate(init.target, init.draft, init.prompt, {
    k: init.k,
    maxK: Math.max(SPECULATIVE_DEFAULTS.maxK, init.k),
    adaptive: true,
    maxNewTokens: init.maxNewTokens,
    eosTokenIds: init.eosTokenIds,
    sampling: init.sampling,
    signal: init.signal,
    onRound: r => {
      counted.rounds++
      counted.proposed += r.k
      counted.accepted += r.accepted
      counted.k = r.k
    }
  })
  const tokens: number[] = []
  let finishReason: FinishReasonValue | undefined
  let step: IteratorResult<SpeculativeToken, SpeculativeResult>
  while (!(step = await it.next()).done) {
    tokens.push(step.value.id)
    const { emit, stopped } = text.push(tokens)
    if (stopped) {
      if (emit !== '') {
        await init.onToken?.({ token: step.value.id, text: emit })
      }
      finishReason = FinishReason.STOP
      await it.return(undefined as any)
      break
    }
    await init.onToken?.({ token: step.value.id, text: decode != null ? emit : null })
  }
  const stats = step.done === true ? step.value.stats : undefined
  const speculative: SpeculativeJson = {
    k: init.k,
    finalK: stats?.k ?? counted.k,
    acceptanceRate: counted.proposed > 0 ? counted.accepted / counted.proposed : 0,
    proposed: counted.proposed,
    accepted: counted.accepted,
    targetSteps: counted.rounds
  }
  return { tokens, text: text.finish(tokens).all, finishReason: finishReason ?? (step.done === true ? step.value.finishReason : FinishReason.STOP), speculative }
}
