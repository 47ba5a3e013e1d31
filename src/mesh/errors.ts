import { BlydError } from '../protocols/errors.ts'

/** Stable codes of the mesh part. */
export const MeshErrorCode = {
  /** no chain of live spans covers every decoder layer of the model */
  NO_ROUTE: 'ERR_MESH_NO_ROUTE',
  /** a span that does not fit the model (e.g. --layers 0-9 of a 4-layer model) */
  BAD_SPAN: 'ERR_MESH_BAD_SPAN',
  /** the manifest or a unit's payload could not be had in time */
  UNAVAILABLE: 'ERR_MESH_UNAVAILABLE',
  /** libp2p could not start (e.g. the listen port is taken) */
  NETWORK_START: 'ERR_MESH_NETWORK_START',
  /** the service is not started */
  NOT_STARTED: 'ERR_MESH_NOT_STARTED'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type MeshErrorCode = typeof MeshErrorCode[keyof typeof MeshErrorCode]

export class MeshError extends BlydError {
  constructor (code: MeshErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'MeshError'
  }
}
