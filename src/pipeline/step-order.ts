/**
 * The order a stage computes queued steps in: highest priority first, with
 * aging so no priority starves. A step that has waited w ms counts as
 * priority + w / agingMs; comparing two steps that way at any instant is
 * comparing their keys below (arrival time minus agingMs per priority
 * level), smallest first, then the earliest ticket.
 */

export interface QueuedStep {
  /** the session's OPEN priority (higher is more urgent) */
  priority: number
  /** when the step was queued (performance.now() ms) */
  queuedAt: number
  /** arrival order over the whole stage */
  ticket: number
}

/** The scheduling key of a queued step: smaller runs first. */
export function stepKey (step: QueuedStep, agingMs: number): number {
  return step.queuedAt - step.priority * agingMs
}

/** True when `a` should run before `b`. */
export function runsBefore (a: QueuedStep, b: QueuedStep, agingMs: number): boolean {
  const ka = stepKey(a, agingMs)
  const kb = stepKey(b, agingMs)
  return ka < kb || (ka === kb && a.ticket < b.ticket)
}

/** The effective priority of a step at `now`: its priority plus one level per agingMs waited. */
export function effectivePriority (step: QueuedStep, now: number, agingMs: number): number {
  return step.priority + Math.max(0, now - step.queuedAt) / agingMs
}
