/**
 * Base class of every error blyd raises on purpose. `code` is stable and
 * machine-readable (tests, IPC error data and metrics key on it); `message`
 * is one human line.
 */
export class BlydError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BlydError'
    this.code = code
  }
}

/** True when `err` is a BlydError with the given code. */
export function isErrorCode (err: unknown, code: string): boolean {
  return err instanceof BlydError && err.code === code
}
