/**
 * Session priorities: the byte a client puts in OPEN. A stage runs the
 * queued step with the highest priority first; a waiting step gains one
 * priority level per `priorityAgingMs` it waited (see step-order.ts), so
 * lower priorities are served late, never starved.
 */
import { PipelineError, PipelineErrorCode } from './errors.ts'

export const SessionPriority = {
  /** background work (e.g. training traffic): served when nothing else waits */
  background: 0,
  /** bulk jobs that can wait */
  batch: 1,
  /** a person is waiting for the tokens */
  interactive: 2
} as const

export type SessionPriorityName = keyof typeof SessionPriority

/** most urgent first */
export const SESSION_PRIORITY_NAMES: readonly SessionPriorityName[] = ['interactive', 'batch', 'background']

export function isSessionPriorityName (name: unknown): name is SessionPriorityName {
  return typeof name === 'string' && Object.hasOwn(SessionPriority, name)
}

/** The OPEN priority byte of a priority name; throws INVALID_ARGUMENT for an unknown name. */
export function priorityOf (name: string): number {
  if (!isSessionPriorityName(name)) {
    throw new PipelineError(PipelineErrorCode.INVALID_ARGUMENT, `priority must be one of ${SESSION_PRIORITY_NAMES.join(', ')}, got ${JSON.stringify(name)}`)
  }
  return SessionPriority[name]
}
