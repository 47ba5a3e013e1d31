/**
 * What a generation drives. A token model makes sessions; a session holds
 * one sequence's cached positions. A whole local model (LayerRange, or a
 * LocalTokenSession over it) and the pipeline client over remote stages
 * (PipelineSession) are both token models, so generate(), speculative
 * decoding and runGeneration() run unchanged on either.
 */

export interface TokenSession {
  dispose(): void
}

export interface TokenModel<S extends TokenSession = TokenSession> {
  createSession(): S
  /** feeds the new ids (the prompt, then one token per step); resolves the next-token logits */
  nextLogits(session: S, ids: number[]): Promise<Float32Array>
}

/** Logits of one forward: the last position's, or every position's with allRows ([rows, vocab] f32). */
export interface StepLogits {
  logits: Float32Array
  rows: number
  vocab: number
}

/** What speculation drives on both sides: a PipelineSession, or a local model session (LocalTokenSession). */
export interface SpeculativeSession {
  /** positions cached */
  readonly length: number
  /** feeds `ids` at the next positions; logits of the last row, or of every row with allRows ([rows, vocab]) */
  forward(ids: number[], options?: { allRows?: boolean, signal?: AbortSignal }): Promise<StepLogits>
  /** rolls the cache back to `length` positions */
  truncate(length: number): Promise<void>
}

/** A generation session that can also verify drafts and roll back: what runGeneration() drives. */
export interface VerifyingSession extends SpeculativeSession, TokenSession {}
