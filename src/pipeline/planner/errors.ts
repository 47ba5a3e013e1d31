import { BlydError } from '../../protocols/errors.ts'

/** Stable codes of the partition planner's errors. */
export const PlannerErrorCode = {
  /** a model shape, node list, span or option the planner cannot use */
  INVALID_ARGUMENT: 'ERR_PLANNER_INVALID_ARGUMENT'
} as const

export type PlannerErrorCodeValue = typeof PlannerErrorCode[keyof typeof PlannerErrorCode]

/** Error raised by planPartition, evaluatePlan and rebalance. */
export class PlannerError extends BlydError {
  constructor (code: PlannerErrorCodeValue, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'PlannerError'
  }
}
