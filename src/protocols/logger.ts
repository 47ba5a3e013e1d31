/**
 * The one logger every part of blyd is handed: libp2p's `ComponentLogger`
 * shape (`@libp2p/interface`) with two more levels. A component takes
 * `logger: BlyComponentLogger` among its components and calls
 * `forComponent('bly:<part>:<name>')` once, in its constructor; each call
 * site then chooses its level:
 *
 * - `log.error(...)`: this node is failing at its job or a local fault (a
 * served span could not load, the store threw, an IPC method failed
 * unexpectedly): an operator should act;
 * - `log.warn(...)`: a failure the node recovered from or will retry (a
 * generation failed over, a re-plan, an announcement or a sync failed);
 * - `log.info(...)`: what an operator follows (started, listening, serving or
 * moving a span, a peer banned);
 * - `log(...)` (debug): what a developer follows (rounds, blocks refused from
 * peers, routine network failures), and libp2p's own diagnostics;
 * - `log.trace(...)`: per-message detail.
 *
 * Every method takes libp2p's printf form (`log('synced with %p: %o', peer,
 * result)`, directives %s %d %i %f %j %o %O %p %a %c %k %b %t %m %e) or blyd's
 * event form (`log.warn('generate.recovered', { attempt, reason })`: an
 * event name and one object of fields); both may be mixed, a plain object
 * left over after the directives gives key=value fields. The daemon's
 * implementation (`daemon/logger.ts`) writes one line per call at or above
 * its level; `silentLogger()` drops everything (library use, tests).
 *
 * A `BlyComponentLogger` is a libp2p `ComponentLogger`, so the daemon hands
 * the same one to libp2p (createLibp2p's `logger`) and code written against
 * libp2p's shape takes it unchanged.
 */
import type { ComponentLogger, Logger } from '@libp2p/interface'

/** The values a field of the event form may carry. */
export type LogFields = Record<string, unknown>

export interface BlyLogger extends Logger {
  /** what an operator follows */
  info(formatter: any, ...args: any[]): void
  /** a failure that was recovered from or will be retried */
  warn(formatter: any, ...args: any[]): void
  /** a logger for `<this component>:<name>` */
  newScope(name: string): BlyLogger
}

export interface BlyComponentLogger extends ComponentLogger {
  /** the logger of one component, named `bly:<part>:<name>` (libp2p's own are `libp2p:<name>`) */
  forComponent(name: string): BlyLogger
}

function silentComponent (): BlyLogger {
  const drop = (): void => {}
  const log: BlyLogger = Object.assign(drop, {
    error: drop,
    warn: drop,
    info: drop,
    trace: drop,
    enabled: false,
    newScope: () => log
  })
  return log
}

/** A logger that drops everything (library use without output, tests). */
export function silentLogger (): BlyComponentLogger {
  const log = silentComponent()
  return { forComponent: () => log }
}
