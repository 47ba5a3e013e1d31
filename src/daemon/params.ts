/**
 * Small params validators for IPC methods. Each throws InvalidParamsError
 * (answered with -32602) naming the offending field.
 */
import { InvalidParamsError } from './errors.ts'
import type { ParamsValidator } from './ipc-server.ts'

type FieldCheck<T> = (value: unknown, name: string) => T

/** Params must be absent, `{}` or `[]`. */
export const noParams: ParamsValidator<Record<string, never>> = (params) => {
  if (params === undefined || (Array.isArray(params) && params.length === 0) ||
    (params != null && typeof params === 'object' && !Array.isArray(params) && Object.keys(params).length === 0)) {
    return {}
  }
  throw new InvalidParamsError('this method takes no params')
}

/** Params must be an object with exactly the known keys; each value checked by its field check. */
export function objectParams<T extends Record<string, unknown>> (fields: { [K in keyof T]: FieldCheck<T[K]> }): ParamsValidator<T> {
  return (params) => {
    const given = params ?? {}
    if (typeof given !== 'object' || Array.isArray(given)) {
      throw new InvalidParamsError('params must be an object')
    }
    for (const key of Object.keys(given)) {
      if (!Object.hasOwn(fields, key)) {
        throw new InvalidParamsError(`unknown param "${key}" (known: ${Object.keys(fields).join(', ') || 'none'})`)
      }
    }
    const out: Record<string, unknown> = {}
    for (const [key, check] of Object.entries(fields) as Array<[string, FieldCheck<unknown>]>) {
      out[key] = check((given as Record<string, unknown>)[key], key)
    }
    return out as T
  }
}

export function requiredString (value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidParamsError(`"${name}" must be a non-empty string`)
  }
  return value
}

export function optionalString (value: unknown, name: string): string | undefined {
  return value === undefined ? undefined : requiredString(value, name)
}

export function optionalBoolean (value: unknown, name: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidParamsError(`"${name}" must be a boolean`)
  }
  return value
}

/** A 64-hex-character block id, returned lowercase. */
export function blockIdHex (value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{64}$/.test(value)) {
    throw new InvalidParamsError(`"${name}" must be a block id of 64 hex characters`)
  }
  return value.toLowerCase()
}

export function oneOf<T extends string> (choices: readonly T[]): FieldCheck<T | undefined> {
  return (value, name) => {
    if (value === undefined) {
      return undefined
    }
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      throw new InvalidParamsError(`"${name}" must be one of ${choices.join(', ')}`)
    }
    return value as T
  }
}
