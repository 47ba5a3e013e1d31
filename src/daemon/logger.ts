/**
 * One line per event: `<iso time> <LEVEL> <event> key=value ...`, written to
 * stderr by default. Values with spaces or quotes are JSON-quoted.
 */
import { LOG_LEVELS } from './constants.ts'
import type { LogLevel } from './config.ts'

export type LogFields = Record<string, string | number | boolean | bigint | null | undefined>

export interface Logger {
  error(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  debug(event: string, fields?: LogFields): void
}

export interface LoggerInit {
  level: LogLevel
  /** where lines go, default process.stderr */
  write?(line: string): void
  /** clock, default Date.now */
  now?(): number
}

function formatValue (value: LogFields[string]): string {
  const s = String(value)
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)
}

export function formatLine (time: number, level: LogLevel, event: string, fields: LogFields = {}): string {
  let line = `${new Date(time).toISOString()} ${level.toUpperCase()} ${event}`
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) {
      line += ` ${key}=${formatValue(value)}`
    }
  }
  return line + '\n'
}

export function createLogger (init: LoggerInit): Logger {
  const threshold = LOG_LEVELS.indexOf(init.level)
  const write = init.write ?? ((line: string) => { process.stderr.write(line) })
  const now = init.now ?? Date.now
  const at = (level: LogLevel) => (event: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) <= threshold) {
      write(formatLine(now(), level, event, fields))
    }
  }
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug')
  }
}

/** A logger that drops everything (for library use without output). */
export function silentLogger (): Logger {
  const drop = (): void => {}
  return { error: drop, warn: drop, info: drop, debug: drop }
}
