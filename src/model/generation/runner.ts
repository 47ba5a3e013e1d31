/**
 * The one runner of a generation, local or through the mesh: it takes any
 * token model whose sessions can verify and roll back (a LocalTokenSession
 * over a whole local model, or a PipelineSession over remote stages) and
 * runs plain decoding (generate()) or, with a draft model, speculative
 * decoding (speculativeGenerate()), streaming each token with the text it
 * completes (stop strings held back). The session is created here and
 * disposed when the generation ends, fails or is aborted.
 */
import { generate, FinishReason, TextStream } from './generate.ts'
import { LocalTokenSession } from './local-session.ts'
import { SPECULATIVE_DEFAULTS, speculativeGenerate } from './speculative.ts'
import type { FinishReasonValue, GeneratedToken, GenerationResult } from './generate.ts'
import type { SpeculativeResult, SpeculativeToken } from './speculative.ts'
import type { TokenModel, VerifyingSession } from './token-model.ts'
import type { GenerateTokenJson, SpeculativeJson } from '../../protocols/ipc.ts'
import type { LayerRange } from '../qwen3/layer-range.ts'
import type { SamplingOptions } from '../sampling.ts'
import type { ChatTokenizer } from '../tokenizer.ts'

export interface RunGenerationInit<S extends VerifyingSession> {
  /** the model that produces the tokens */
  target: TokenModel<S>
  prompt: number[]
  /** null: token ids only (no text, no stop strings) */
  tokenizer: ChatTokenizer | null
  eosTokenIds: number[]
  sampling: SamplingOptions
  maxNewTokens?: number
  stop?: string[]
  /** speculative decoding: a whole local model with the target's vocabulary drafts `k` tokens a round (k adapts) */
  draft?: { model: LayerRange, k: number }
  onToken?(t: GenerateTokenJson): void | Promise<void>
  /** told of every target step of plain decoding: positions fed, ms it took (not called in speculative decoding) */
  onStep?(positions: number, ms: number): void
  signal?: AbortSignal
}

export interface RunGenerationResult {
  tokens: number[]
  text: string
  finishReason: FinishReasonValue
  /** how speculation went (with a draft only) */
  speculative?: SpeculativeJson
}

export async function runGeneration<S extends VerifyingSession> (init: RunGenerationInit<S>): Promise<RunGenerationResult> {
  return init.draft != null ? runSpeculative(init, init.draft) : runPlain(init)
}

/** One token per target step: generate() with its Sampler and stop rules. */
async function runPlain<S extends VerifyingSession> (init: RunGenerationInit<S>): Promise<RunGenerationResult> {
  const { tokenizer, onStep } = init
  const target: TokenModel<S> = onStep == null
    ? init.target
    : {
        createSession: () => init.target.createSession(),
        nextLogits: async (session, ids) => {
          const t = performance.now()
          const logits = await init.target.nextLogits(session, ids)
          onStep(ids.length, performance.now() - t)
          return logits
        }
      }
  const it = generate(target, init.prompt, {
    maxNewTokens: init.maxNewTokens,
    eosTokenIds: init.eosTokenIds,
    stopStrings: init.stop,
    sampling: init.sampling,
    decode: tokenizer != null ? (ids: number[]) => tokenizer.decode(ids) : undefined,
    signal: init.signal
  })
  let step: IteratorResult<GeneratedToken, GenerationResult>
  while (!(step = await it.next()).done) {
    await init.onToken?.({ token: step.value.id, text: tokenizer != null ? step.value.text : null })
  }
  const { tokens, text, finishReason } = step.value
  return { tokens, text, finishReason }
}

/** The draft proposes, one target pass verifies (speculative.ts); tokens stream as generate() streams them. */
async function runSpeculative<S extends VerifyingSession> (init: RunGenerationInit<S>, draftModel: { model: LayerRange, k: number }): Promise<RunGenerationResult> {
  const { tokenizer } = init
  const decode = tokenizer != null ? (ids: number[]) => tokenizer.decode(ids) : undefined
  const stops = (init.stop ?? []).filter(s => s !== '')
  const text = new TextStream(decode, decode != null ? stops : [])
  const counted = { rounds: 0, proposed: 0, accepted: 0, k: draftModel.k }
  const target = init.target.createSession()
  const draft = new LocalTokenSession(draftModel.model)
  try {
    const it = speculativeGenerate(target, draft, init.prompt, {
      k: draftModel.k,
      maxK: Math.max(SPECULATIVE_DEFAULTS.maxK, draftModel.k),
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
      k: draftModel.k,
      finalK: stats?.k ?? counted.k,
      acceptanceRate: counted.proposed > 0 ? counted.accepted / counted.proposed : 0,
      proposed: counted.proposed,
      accepted: counted.accepted,
      targetSteps: counted.rounds
    }
    return { tokens, text: text.finish(tokens).all, finishReason: finishReason ?? (step.done === true ? step.value.finishReason : FinishReason.STOP), speculative }
  } finally {
    target.dispose()
    draft.dispose()
  }
}
