/**
 * The daemon's logger: one `BlyComponentLogger` (protocols/logger.ts) for
 * every part and for libp2p itself, writing one line per call at or above
 * the configured level (config `logLevel`) in the format of log-format.ts,
 * to stderr by default, e.g.
 * `2025-01-01T00:00:00.000Z WARN bly:mesh:generate generate.recovered session=1 reason=timeout`.
 *
 * A logger's callable form and libp2p's own diagnostics are `debug`,
 * `trace` is below it; `enabled` is true when `debug` is written (libp2p
 * checks it before costly formatting). Lines are written synchronously in
 * call order; nothing is buffered.
 */
import { LOG_LEVELS } from './constants.ts'
import { formatLine, formatMessage } from './log-format.ts'
import type { LogLevel } from './config.ts'
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'

export interface LoggerInit {
  level: LogLevel
  /** where lines go, default process.stderr */
  write?(line: string): void
  /** clock, default Date.now */
  now?(): number
}

export function createLogger (init: LoggerInit): BlyComponentLogger {
  const threshold = LOG_LEVELS.indexOf(init.level)
  const write = init.write ?? ((line: string) => { process.stderr.write(line) })
  const now = init.now ?? Date.now
  const on = (level: LogLevel): boolean => LOG_LEVELS.indexOf(level) <= threshold
  const forComponent = (component: string): BlyLogger => {
    const at = (level: LogLevel) => {
      if (!on(level)) {
        return (): void => {}
      }
      return (formatter: any, ...args: any[]): void => {
        const { message, fields } = formatMessage(formatter, args)
        write(formatLine(now(), level, component, message, fields))
      }
    }
    return Object.assign(at('debug'), {
      error: at('error'),
      warn: at('warn'),
      info: at('info'),
      trace: at('trace'),
      enabled: on('debug'),
      newScope: (name: string) => forComponent(`${component}:${name}`)
    })
  }
  return { forComponent }
}
