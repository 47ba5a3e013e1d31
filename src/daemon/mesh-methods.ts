/**
 * IPC methods of the mesh: `net.status` (identity, addresses, connections,
 * gossip and sync counters) and `peers` (who serves which span of which
 * model). `generate` itself stays in model-methods.ts and is routed through
 * the mesh by the daemon.
 */
import { objectParams, optionalString } from './params.ts'
import type { IpcServer } from './ipc-server.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { NetStatusJson, PeersParams, PeersResult } from '../protocols/ipc-mesh.ts'

export interface MeshMethodContext {
  ipc: IpcServer
  mesh(): Mesh
}

const peersParams = objectParams<{ model: string | undefined }>({ model: optionalString })

export function registerMeshMethods (ctx: MeshMethodContext): void {
  ctx.ipc.register('net.status', objectParams({}), (): NetStatusJson => ({ ...ctx.mesh().netStatus() }))
  ctx.ipc.register('peers', peersParams, async (params: PeersParams, context): Promise<PeersResult> => ctx.mesh().peers(params, context.signal))
}
