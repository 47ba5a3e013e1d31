/**
 * The daemon's log line: `<iso time> <LEVEL> <component> <message> key=value ...`,
 * always one line (a newline inside a message or a value is escaped).
 *
 * A logger call (protocols/logger.ts) is turned into the message and the
 * fields: the printf directives libp2p's loggers know are replaced by their
 * arguments (%s string, %d %i integer, %f float, %j JSON, %o %O an inspected
 * object, %p %a %c %k `toString()` of a peer id, multiaddr, CID or key,
 * %b %t %m base58btc, base32 and base64 of bytes, %e an error's message with
 * its code and causes, %% a percent sign); an argument left over is appended
 * to the message, except a plain object, whose entries become key=value
 * fields (the event form `log.info('daemon.started', { pid })`). A field
 * whose value is undefined is left out; a value with a space, a quote or an
 * `=` in it is JSON-quoted.
 */
import { inspect } from 'node:util'
import { base32 } from 'multiformats/bases/base32'
import { base58btc } from 'multiformats/bases/base58'
import { base64 } from 'multiformats/bases/base64'
import type { LogFields } from '../protocols/logger.ts'

export interface LogMessage {
  message: string
  fields: LogFields
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value == null || typeof value !== 'object') {
    return false
  }
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** An error as one line: its message, its code when it has one, then its causes. */
export function errorText (err: unknown): string {
  if (!(err instanceof Error)) {
    return String(err)
  }
  const code = (err as { code?: unknown }).code
  let text = err.message === '' ? err.name : err.message
  if (typeof code === 'string' && !text.includes(code)) {
    text += ` (${code})`
  }
  if (err instanceof AggregateError && err.errors.length > 0) {
    text += `: [${err.errors.map(errorText).join('; ')}]`
  }
  if (err.cause != null) {
    text += `; cause: ${errorText(err.cause)}`
  }
  return text
}

function inspectOne (value: unknown): string {
  return inspect(value, { breakLength: Infinity, compact: true, depth: 4 })
}

/** A value as text: strings as they are, bytes as hex, errors by errorText, objects by their own toString or inspected. */
function text (value: unknown): string {
  if (typeof value === 'string') {
    return value
  }
  if (value instanceof Uint8Array) {
    return hex(value)
  }
  if (value instanceof Error) {
    return errorText(value)
  }
  if (value != null && typeof value === 'object' && !Array.isArray(value) && !isPlainObject(value) && value.toString !== Object.prototype.toString) {
    return String(value)
  }
  if (value != null && typeof value === 'object') {
    return inspectOne(value)
  }
  return String(value)
}

function bytesIn (value: unknown, encode: (bytes: Uint8Array) => string): string {
  return value instanceof Uint8Array ? encode(value) : text(value)
}

const DIRECTIVES: Record<string, (value: unknown) => string> = {
  s: text,
  d: value => typeof value === 'bigint' ? value.toString() : String(Math.trunc(Number(value))),
  i: value => typeof value === 'bigint' ? value.toString() : String(Math.trunc(Number(value))),
  f: value => String(Number(value)),
  j: value => JSON.stringify(value, (_key, v) => typeof v === 'bigint' ? v.toString() : v) ?? 'undefined',
  o: inspectOne,
  O: inspectOne,
  p: text,
  a: text,
  c: text,
  k: text,
  b: value => bytesIn(value, bytes => base58btc.baseEncode(bytes)),
  t: value => bytesIn(value, bytes => base32.baseEncode(bytes)),
  m: value => bytesIn(value, bytes => base64.baseEncode(bytes)),
  e: errorText
}

/** The message and fields of one logger call `log(formatter, ...args)`. */
export function formatMessage (formatter: unknown, args: unknown[]): LogMessage {
  const rest = typeof formatter === 'string' ? [...args] : [formatter, ...args]
  let message = typeof formatter === 'string'
    ? formatter.replace(/%([a-zA-Z%])/g, (match, directive: string) => {
      if (directive === '%') {
        return '%'
      }
      const render = DIRECTIVES[directive]
      if (render == null || rest.length === 0) {
        return match
      }
      return render(rest.shift())
    })
    : ''
  const fields: LogFields = {}
  for (const value of rest) {
    if (isPlainObject(value)) {
      Object.assign(fields, value)
    } else if (value !== undefined) {
      message += `${message === '' ? '' : ' '}${text(value)}`
    }
  }
  return { message, fields }
}

function oneLine (s: string): string {
  return s.replace(/\r?\n/g, '\\n')
}

function formatValue (value: unknown): string {
  const s = value === null ? 'null' : text(value)
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)
}

/** One line of the daemon's log, newline included. */
export function formatLine (time: number, level: string, component: string, message: string, fields: LogFields = {}): string {
  let line = `${new Date(time).toISOString()} ${level.toUpperCase()} ${component}`
  if (message !== '') {
    line += ` ${oneLine(message)}`
  }
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) {
      line += ` ${key}=${formatValue(value)}`
    }
  }
  return line + '\n'
}
