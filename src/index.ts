/**
 * The package entry (`import ... from 'blyd'`): what a program needs to run
 * a daemon in-process or to talk to a running one over its IPC socket, and
 * the IPC types (the JSON-RPC methods' params and results). The parts'
 * internals stay behind their folders' own index files.
 */
export { createDaemon, Daemon, IpcClient, withIpcClient, loadConfig, resolveDataDir, CONFIG_KEYS } from './daemon/index.ts'
export type { DaemonInit, BlydConfig, ConfigKey, ConfigSources } from './daemon/index.ts'
export { BlydError, isErrorCode } from './protocols/errors.ts'
export type * from './protocols/ipc.ts'
