/**
 * IPC methods of the mesh: `net.status` (identity, addresses, connections,
 * gossip and sync counters) and `peers` (who serves which span of which
 * model). `generate` itself stays in model-methods.ts and is routed through
 * the mesh by the daemon. `plan`: coverage per layer, the bottleneck and
 * what the partition planner would do (src/mesh/swarm-plan.ts).
 */
import { InvalidParamsError } from './errors.ts'
import { objectParams, optionalBoolean, optionalString } from './params.ts'
import type { IpcServer } from './ipc-server.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { NoParams } from '../protocols/ipc.ts'

export interface MeshMethodContext {
  ipc: IpcServer
  mesh(): Mesh
}

const peersParams = objectParams<{ model: string | undefined }>({ model: optionalString })

function optionalReplicas (value: unknown, name: string): number | undefined {
  if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > 64)) {
    throw new InvalidParamsError(`"${name}" must be a whole number from 1 to 64`)
  }
  return value
}

const planParams = objectParams<{ model: string | undefined, replicas: number | undefined, idlePeers: boolean | undefined }>({ model: optionalString, replicas: optionalReplicas, idlePeers: optionalBoolean })

export function registerMeshMethods (ctx: MeshMethodContext): void {
  ctx.ipc.register('net.status', objectParams<NoParams>({}), () => ({ ...ctx.mesh().netStatus() }))
  ctx.ipc.register('peers', peersParams, async (params, context) => ctx.mesh().peers(params, context.signal))
  ctx.ipc.register('plan', planParams, async (params, context) => ctx.mesh().plan(params, context.signal))
}
