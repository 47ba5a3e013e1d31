import { BlydError } from '../protocols/errors.ts'

/** Error codes of the daemon, IPC and CLI parts. */
export const DaemonErrorCode = {
  CONFIG: 'ERR_CONFIG',
  IDENTITY: 'ERR_IDENTITY',
  LOCKED: 'ERR_DAEMON_RUNNING',
  LOCK: 'ERR_LOCK',
  NOT_RUNNING: 'ERR_DAEMON_NOT_RUNNING',
  IPC: 'ERR_IPC',
  IPC_CLOSED: 'ERR_IPC_CLOSED',
  LINE_TOO_LONG: 'ERR_IPC_LINE_TOO_LONG',
  /** a JSON-RPC batch with more calls than ipcMaxBatch */
  BATCH_TOO_LARGE: 'ERR_IPC_BATCH_TOO_LARGE',
  /** a request nested deeper than IPC_MAX_JSON_DEPTH */
  TOO_DEEP: 'ERR_IPC_TOO_DEEP',
  /** a request with more JSON values than IPC_MAX_JSON_VALUES */
  TOO_MANY_VALUES: 'ERR_IPC_TOO_MANY_VALUES',
  /** unfinished request lines over all connections would pass ipcMaxBufferedLineBytes */
  LINES_BUDGET: 'ERR_IPC_BUFFER_FULL',
  /** ipcMaxConnections connections are open already */
  TOO_MANY_CONNECTIONS: 'ERR_IPC_TOO_MANY_CONNECTIONS',
  INVALID_PARAMS: 'ERR_INVALID_PARAMS',
  NOT_FOUND: 'ERR_NOT_FOUND',
  PAYLOAD: 'ERR_PAYLOAD',
  USAGE: 'ERR_USAGE',
  STOPPING: 'ERR_STOPPING'
} as const

export class ConfigError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.CONFIG, message, options)
    this.name = 'ConfigError'
  }
}

export class IdentityError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.IDENTITY, message, options)
    this.name = 'IdentityError'
  }
}

/** Another live process holds the data dir. */
export class DaemonRunningError extends BlydError {
  readonly pid: number

  constructor (message: string, pid: number) {
    super(DaemonErrorCode.LOCKED, message)
    this.name = 'DaemonRunningError'
    this.pid = pid
  }
}

export class LockError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.LOCK, message, options)
    this.name = 'LockError'
  }
}

export class DaemonNotRunningError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.NOT_RUNNING, message, options)
    this.name = 'DaemonNotRunningError'
  }
}

/** Thrown by params validators; the IPC server answers it with -32602. */
export class InvalidParamsError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.INVALID_PARAMS, message)
    this.name = 'InvalidParamsError'
  }
}

export class NotFoundError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.NOT_FOUND, message)
    this.name = 'NotFoundError'
  }
}

export class UsageError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.USAGE, message)
    this.name = 'UsageError'
  }
}

/**
 * An error answered by the daemon over IPC. `rpcCode` is the JSON-RPC code,
 * `code` the BlydError code from `error.data.code` when the daemon sent one.
 */
export class IpcRemoteError extends BlydError {
  readonly rpcCode: number
  readonly data: unknown

  constructor (rpcCode: number, message: string, data?: unknown) {
    const code = (data != null && typeof data === 'object' && typeof (data as { code?: unknown }).code === 'string')
      ? (data as { code: string }).code
      : `ERR_RPC_${-rpcCode}`
    super(code, message)
    this.name = 'IpcRemoteError'
    this.rpcCode = rpcCode
    this.data = data
  }
}

export class IpcError extends BlydError {
  constructor (message: string, code: string = DaemonErrorCode.IPC, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'IpcError'
  }
}
