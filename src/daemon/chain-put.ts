/**
 * `chain.put`: the daemon reads a local file, streamed, and stores it as the
 * payload of a block it authors on chain A, parents = the current tips of A.
 */
import { open as openFd } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { Socket } from 'node:net'
import { isAbsolute } from 'node:path'
import { promisify } from 'node:util'
import { BlockType, ChainId } from '../chain/types.ts'
import { BlydError } from '../protocols/errors.ts'
import { DaemonErrorCode, InvalidParamsError } from './errors.ts'
import type { BlockSigner, ChainStoreApi, StoredBlock } from '../chain/types.ts'

/** block types `chain.put` may create, by their CLI name */
export const PUT_TYPES = {
  note: BlockType.Note
} as const
export type PutTypeName = keyof typeof PUT_TYPES

export interface PutFromFileOptions {
  store: ChainStoreApi
  signer: BlockSigner
  /** absolute path of a regular file or a FIFO */
  path: string
  type: PutTypeName
  signal?: AbortSignal
}

const READ_CHUNK_BYTES = 1024 * 1024

/**
 * A FIFO read through the event loop (a net.Socket on its fd) rather than the
 * thread pool: a thread-pool read blocked on an open, silent writer cannot be
 * cancelled, so an aborted put would hold up the daemon's stop (and its exit)
 * until the writer closed.
 */
async function putFromFifo (options: PutFromFileOptions): Promise<StoredBlock> {
  const { store, signer, path } = options
  let fd: number
  try {
    // waits (in the thread pool) for a writer to open the FIFO
    fd = await promisify(openFd)(path, 'r')
  } catch (err: any) {
    throw new BlydError(DaemonErrorCode.PAYLOAD, `cannot open payload file ${path} (${err.code ?? err.message})`, { cause: err })
  }
  const socket = new Socket({ fd, readable: true, writable: false })
  socket.on('error', () => {})
  const onAbort = (): void => { socket.destroy(options.signal?.reason) }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    options.signal?.throwIfAborted()
    const parents = await store.tips(ChainId.A)
    return await store.createBlock({ chain: ChainId.A, type: PUT_TYPES[options.type], parents, payload: socket }, signer)
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    // the socket owns the fd: destroying it closes the fd
    socket.destroy()
  }
}

export async function putFromFile (options: PutFromFileOptions): Promise<StoredBlock> {
  const { store, signer, path } = options
  if (!isAbsolute(path)) {
    throw new InvalidParamsError(`"payload" must be an absolute path (got ${path})`)
  }
  const kind = await stat(path).catch(() => undefined)
  if (kind?.isFIFO() === true) {
    return putFromFifo(options)
  }
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err: any) {
    throw new BlydError(DaemonErrorCode.PAYLOAD, `cannot open payload file ${path} (${err.code ?? err.message})`, { cause: err })
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile() && !stat.isFIFO()) {
      throw new BlydError(DaemonErrorCode.PAYLOAD, `payload ${path} is not a regular file`)
    }
    const parents = await store.tips(ChainId.A)
    const payload = stat.isFile() && stat.size === 0
      ? undefined
      : handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES, autoClose: false, signal: options.signal })
    return await store.createBlock({
      chain: ChainId.A,
      type: PUT_TYPES[options.type],
      parents,
      payload
    }, signer)
  } finally {
    await handle.close().catch(() => {})
  }
}
