/**
 * The stages one pipeline session drives, in route order, with what each
 * was sent (stage-history.ts) and the milliseconds each took. Failover
 * replaces one entry by one or more (replace); the four lists stay aligned:
 * hop i runs on stages[i], was sent history[i] and took stageMs[i]; the
 * last history list holds the last stage's outputs.
 */
import type { PipelineStage } from './pipeline-stage.ts'
import type { ResolvedHop } from './route.ts'
import type { StageInput } from './stage-history.ts'

export class SessionRoute {
  readonly hops: ResolvedHop[]
  /** per stage the inputs it was sent; one more list at the end: the last stage's outputs */
  readonly history: StageInput[][]
  /** per stage: milliseconds from sending a FORWARD to its RESULT (the session stats' array) */
  readonly stageMs: number[]
  /** empty until the session opens its stages */
  stages: PipelineStage[]

  constructor (hops: readonly ResolvedHop[], stageMs: number[]) {
    this.hops = [...hops]
    this.history = [...hops.map(() => []), []]
    this.stageMs = stageMs
    this.stages = []
  }

  /**
   * Puts `hops` (run on `stages`, sent `inputs`) where the stage at `index`
   * stood; their times start at 0.
   */
  replace (index: number, hops: ResolvedHop[], stages: PipelineStage[], inputs: StageInput[][]): void {
    this.hops.splice(index, 1, ...hops)
    this.stages.splice(index, 1, ...stages)
    this.history.splice(index, 1, ...inputs)
    this.stageMs.splice(index, 1, ...hops.map(() => 0))
  }
}
