import { BlydError } from '../protocols/errors.ts'

/** Error codes of the daemon, IPC and CLI parts. */
export const DaemonErrorCode = {
  Config: 'ERR_CONFIG',
  Identity: 'ERR_IDENTITY',
  Locked: 'ERR_DAEMON_RUNNING',
  Lock: 'ERR_LOCK',
  NotRunning: 'ERR_DAEMON_NOT_RUNNING',
  Ipc: 'ERR_IPC',
  IpcClosed: 'ERR_IPC_CLOSED',
  LineTooLong: 'ERR_IPC_LINE_TOO_LONG',
  /** a JSON-RPC batch with more calls than ipcMaxBatch */
  BatchTooLarge: 'ERR_IPC_BATCH_TOO_LARGE',
  /** a request nested deeper than IPC_MAX_JSON_DEPTH */
  TooDeep: 'ERR_IPC_TOO_DEEP',
  /** a request with more JSON values than IPC_MAX_JSON_VALUES */
  TooManyValues: 'ERR_IPC_TOO_MANY_VALUES',
  /** unfinished request lines over all connections would pass ipcMaxBufferedLineBytes */
  LinesBudget: 'ERR_IPC_BUFFER_FULL',
  /** ipcMaxConnections connections are open already */
  TooManyConnections: 'ERR_IPC_TOO_MANY_CONNECTIONS',
  InvalidParams: 'ERR_INVALID_PARAMS',
  NotFound: 'ERR_NOT_FOUND',
  Payload: 'ERR_PAYLOAD',
  Usage: 'ERR_USAGE',
  Stopping: 'ERR_STOPPING'
} as const

export class ConfigError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.Config, message, options)
    this.name = 'ConfigError'
  }
}

export class IdentityError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.Identity, message, options)
    this.name = 'IdentityError'
  }
}

/** Another live process holds the data dir. */
export class DaemonRunningError extends BlydError {
  readonly pid: number

  constructor (message: string, pid: number) {
    super(DaemonErrorCode.Locked, message)
    this.name = 'DaemonRunningError'
    this.pid = pid
  }
}

export class LockError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.Lock, message, options)
    this.name = 'LockError'
  }
}

export class DaemonNotRunningError extends BlydError {
  constructor (message: string, options?: ErrorOptions) {
    super(DaemonErrorCode.NotRunning, message, options)
    this.name = 'DaemonNotRunningError'
  }
}

/** Thrown by params validators; the IPC server answers it with -32602. */
export class InvalidParamsError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.InvalidParams, message)
    this.name = 'InvalidParamsError'
  }
}

export class NotFoundError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.NotFound, message)
    this.name = 'NotFoundError'
  }
}

export class UsageError extends BlydError {
  constructor (message: string) {
    super(DaemonErrorCode.Usage, message)
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
  constructor (message: string, code: string = DaemonErrorCode.Ipc, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'IpcError'
  }
}
