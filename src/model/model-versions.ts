/**
 * The hook through which the daemon and the CLI hand the model part the
 * versions of each model (weights-version.ts says what a version is);
 * learning/model-versions.ts implements it over the fold.
 */
import type { ModelManifest } from './chain-loader.ts'
import type { WeightsVersion } from './weights-version.ts'

/** The versions of the models on the chain. */
export interface ModelVersions {
  /**
   * Version `version` of `manifest`'s model: a full id or a unique prefix
   * (>= 8 hex characters) of any version of its history; undefined = the
   * live version. Throws ModelError ERR_MODEL_VERSION_NOT_FOUND or
   * ERR_MODEL_VERSION_AMBIGUOUS.
   */
  resolve(manifest: ModelManifest, version?: string): Promise<WeightsVersion>
}
