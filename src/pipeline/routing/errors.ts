import { BlydError } from '../../protocols/errors.ts'

/** Stable codes of the route finder's errors. */
export const RoutingErrorCode = {
  /** no chain of usable spans covers every decoder layer */
  NO_ROUTE: 'ERR_ROUTING_NO_ROUTE',
  /** a layer count or option the route finder cannot use */
  INVALID_ARGUMENT: 'ERR_ROUTING_INVALID_ARGUMENT'
} as const

export type RoutingErrorCodeValue = typeof RoutingErrorCode[keyof typeof RoutingErrorCode]

export interface RoutingErrorOptions extends ErrorOptions {
  /** NO_ROUTE: layers no usable span holds (empty when every layer is held but the spans do not chain) */
  missingLayers?: number[]
}

export class RoutingError extends BlydError {
  readonly missingLayers: number[]

  constructor (code: RoutingErrorCodeValue, message: string, options: RoutingErrorOptions = {}) {
    super(code, message, options)
    this.name = 'RoutingError'
    this.missingLayers = options.missingLayers ?? []
  }
}
