/**
 * Versions of a model's weights as the chain loader and the inference
 * service read them: the hook through which a version's weights reach the
 * model math without the model part knowing what a version is.
 *
 * A version is the imported weights plus an ordered list of accepted
 * deltas (protocols/versions.md); which deltas, in which order, is decided
 * by the learning part's fold, which the model part may not import. So the
 * loader takes a WeightsVersion: for each unit the version changes, the
 * tensors to use instead of the unit's Layer block; every other unit is read
 * from its Layer block as before. learning/model-versions.ts implements
 * ModelVersions (model-versions.ts) over the fold; the daemon and the CLI inject it. Without a
 * ModelVersions every model is its imported weights, exactly as before.
 */
import type { RawTensor } from './safetensors/dtypes.ts'

/** One accepted delta of a version: the proposal that carried it, the Delta block, its unit (hex ids). */
export interface AcceptedDeltaRef {
  proposal: string
  delta: string
  unit: number
}

/** One version of one model's weights. */
export interface WeightsVersion {
  /** the version id, 64 lowercase hex characters */
  readonly id: string
  /** 0 for the imported weights (V0), one more per accepted proposal */
  readonly index: number
  /** every accepted delta up to this version, in the order they apply */
  readonly acceptedDeltas: readonly AcceptedDeltaRef[]
  /** the units (ascending) whose weights differ from their Layer block's */
  readonly changedUnits: readonly number[]
  /**
   * The tensors of `unit` in this version (float32, every tensor of the
   * unit), or undefined for a unit the version leaves as imported (read it
   * from its Layer block). Fresh arrays the caller owns.
   */
  unitTensors(unit: number): Promise<Map<string, RawTensor> | undefined>
  /**
   * The version's weights hash (hex; learning/weights-hash.ts over every
   * unit), computed once, then cached; null while some unit, delta or
   * payload it needs is not stored here.
   */
  weightsHash(): Promise<string | null>
}
