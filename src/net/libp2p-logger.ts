/**
 * The view of blyd's logger that libp2p itself is handed (createLibp2p's
 * `logger`): libp2p's diagnostics, its `log.error` lines included, are
 * written at debug, and its `log.trace` lines at trace. libp2p reports
 * routine network events through its error channel (a dial refused, a
 * stream closed early, a ping timed out) and keeps them behind `DEBUG` by
 * default; blyd's own components report what an operator must see at warn
 * or error (protocols/logger.ts), so libp2p's lines do not drown them.
 */
import type { BlyComponentLogger, BlyLogger } from '../protocols/logger.ts'
import type { ComponentLogger, Logger } from '@libp2p/interface'

function atDebug (log: BlyLogger): Logger {
  const debug = (formatter: any, ...args: any[]): void => { log(formatter, ...args) }
  return Object.assign(debug, {
    error: debug,
    trace: log.trace,
    enabled: log.enabled,
    newScope: (name: string) => atDebug(log.newScope(name))
  })
}

export function libp2pLogger (logger: BlyComponentLogger): ComponentLogger {
  return {
    forComponent: (name: string) => atDebug(logger.forComponent(name))
  }
}
