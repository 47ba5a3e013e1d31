/**
 * A model whose decoder layers run on remote stages (a TokenModel, so
 * generate() and its Sampler drive it unchanged): each session
 * (pipeline-session.ts) chains the stages of the route from the client,
 * keeps every input it sent for replay, and runs the client's own embedding,
 * final norm and head.
 *
 * A step's deadline adapts to each stage (step-deadline.ts): a multiple of
 * what the stage's recent steps in this session took (before its first
 * step, of its announced speed), never below a floor, never above
 * stepTimeoutMs per deadlineRows positions.
 *
 * Failover (with `reroute`): when a stage's stream closes, it answers ERROR
 * or BUSY, misses its step deadline, or sends a malformed RESULT (wrong
 * shape or position, NaN/Inf), the session bans that peer for the rest of
 * the session, asks `reroute` for other holders of the lost layers [s, e)
 * (one span or several), opens them and replays the stage's whole input
 * history as ONE prefill FORWARD per replacement (failover.ts). The replayed
 * outputs must match what the lost stage produced before (replayTolerance),
 * then the current step goes on. Greedy output is the same as without the
 * failure; each failover is kept in the session's `recoveries`.
 */
import { PipelineError, PipelineErrorCode } from './errors.ts'
import { pipelineClientConfig, stepDeadlineInit } from './pipeline-client-init.ts'
import { PipelineSession } from './pipeline-session.ts'
import { resolveRoute } from './route.ts'
import { checkStepDeadlineInit } from './step-deadline.ts'
import type { PipelineClientConfig, PipelineClientInit } from './pipeline-client-init.ts'
import type { ResolvedHop } from './route.ts'
import type { TokenModel } from '../model/generation/token-model.ts'

export { PipelineSession } from './pipeline-session.ts'
export type { PipelineSessionStats } from './pipeline-session.ts'
export type { PipelineClientInit } from './pipeline-client-init.ts'
export type { PipelineStage } from './pipeline-stage.ts'
export type { StageInput } from './stage-history.ts'
export type { Recovery } from './failover.ts'

/**
 * A model whose decoder layers run on remote stages. createSession() is
 * cheap; the streams open on the session's first step.
 */
export class PipelineClient implements TokenModel<PipelineSession> {
  readonly init: PipelineClientConfig
  readonly route: ResolvedHop[]

  constructor (init: PipelineClientInit) {
    if (!init.local.hasEmbedding || !init.local.hasHead) {
      throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, 'the pipeline client needs the embedding and the head locally')
    }
    this.init = pipelineClientConfig(init)
    checkStepDeadlineInit(stepDeadlineInit(this.init))
    this.route = resolveRoute(init.route, init.local.config.numLayers)
  }

  createSession (): PipelineSession {
    return new PipelineSession(this, this.route)
  }

  async nextLogits (session: PipelineSession, ids: number[]): Promise<Float32Array> {
    return session.nextLogits(ids)
  }
}

export function createPipelineClient (init: PipelineClientInit): PipelineClient {
  return new PipelineClient(init)
}
