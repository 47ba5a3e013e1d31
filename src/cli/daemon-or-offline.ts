/**
 * Commands that work with or without a daemon: ask the running daemon over
 * the socket, or, when none runs, open the data dir directly. The daemon holds
 * the store's LevelDB lock, so the socket is tried first, and offline work
 * takes the data dir lock so a daemon cannot start underneath it.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CHAIN_DIR_NAME } from '../daemon/constants.ts'
import { DaemonErrorCode, DaemonNotRunningError } from '../daemon/errors.ts'
import { IpcClient } from '../daemon/ipc-client.ts'
import { DataDirLock, runningPid } from '../daemon/lock.ts'
import { isErrorCode } from '../protocols/errors.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { BlydConfig } from '../daemon/config.ts'

export interface Either<T> {
  online(client: IpcClient): Promise<T>
  offline(dataDir: string): Promise<T>
}

/** Connect to the daemon; undefined when none runs (a live pid with a dead socket is an error). */
export async function connectIfRunning (config: BlydConfig): Promise<IpcClient | undefined> {
  try {
    return await IpcClient.connect({ socketPath: config.ipcSocket })
  } catch (err) {
    if (!isErrorCode(err, DaemonErrorCode.NOT_RUNNING)) {
      throw err
    }
    const pid = await runningPid(config.dataDir).catch(() => undefined)
    if (pid != null && pid !== process.pid) {
      throw new DaemonNotRunningError(`blyd process ${pid} holds ${config.dataDir} but does not answer on ${config.ipcSocket}`)
    }
    return undefined
  }
}

/** Connect to the daemon or throw DaemonNotRunningError. */
export async function connectOrFail (config: BlydConfig): Promise<IpcClient> {
  const client = await connectIfRunning(config)
  if (client == null) {
    throw new DaemonNotRunningError(`no blyd daemon is running on ${config.dataDir}`)
  }
  return client
}

export async function daemonOrOffline<T> (config: BlydConfig, either: Either<T>): Promise<T> {
  const client = await connectIfRunning(config)
  if (client != null) {
    try {
      return await either.online(client)
    } finally {
      client.close()
    }
  }
  return either.offline(config.dataDir)
}

/** Open the chain store of a data dir with no daemon running, under the data dir lock. */
export async function withOfflineStore<T> (dataDir: string, fn: (store: ChainStoreApi) => Promise<T>): Promise<T> {
  try {
    await stat(dataDir)
  } catch {
    throw new DaemonNotRunningError(`no daemon is running and there is no data dir at ${dataDir} (run "blyd start" first)`)
  }
  const lock = new DataDirLock({ dataDir })
  await lock.acquire()
  try {
    // loaded here, not at the top: commands that only talk to the daemon never load LevelDB
    const { createChainStore } = await import('../chain/index.ts')
    const store = createChainStore({ path: join(dataDir, CHAIN_DIR_NAME) })
    await store.start()
    try {
      return await fn(store)
    } finally {
      await store.stop()
    }
  } finally {
    await lock.release()
  }
}
