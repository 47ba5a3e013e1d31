import { BlydError } from '../../protocols/errors.ts'

/** Stable codes of the errors the fold raises (its findings about blocks are results, not errors). */
export const FoldErrorCode = {
  /** the model id names no stored ModelManifest */
  MODEL_NOT_FOUND: 'ERR_FOLD_MODEL_NOT_FOUND',
  /** a stored learning block whose header breaks a rule the store checked: the store is corrupt */
  CORRUPT: 'ERR_FOLD_CORRUPT'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type FoldErrorCode = typeof FoldErrorCode[keyof typeof FoldErrorCode]

export class FoldError extends BlydError {
  constructor (code: FoldErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'FoldError'
  }
}
