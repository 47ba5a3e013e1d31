/**
 * Reading into memory the reader hands out, for a socket a server accepted.
 * node offers this (the `onread` option) only to sockets it connects itself
 * (net.connect, tls.connect), and TLSSocket drops the option when it wraps
 * an existing socket, which is how tls.Server builds every socket it
 * accepts. `readInPlace` does what `onread` does at construction: it sets
 * net.Socket's three private fields for it (the symbols `kBuffer`,
 * `kBufferGen`, `kBufferCb`, found by description) and calls the handle's
 * `useUserBuffer()`. These are node internals (node 24 here): where any of
 * them is missing it changes nothing and returns false, and the caller keeps
 * reading `data` events. Call it while nothing is buffered in the socket;
 * reading stops (as `pause()` does) until the caller resumes the socket.
 */
import type { Socket } from 'node:net'

export interface ReadInPlaceInit {
  /** where the next read lands (called after every read) */
  buffer(): Uint8Array
  /** `n` bytes landed in `buf`; false stops reading, as pause() */
  callback(n: number, buf: Uint8Array): boolean
}

/** The socket's private field symbols, if it has all three and none is in use. */
function privateFields (socket: Socket): { kBuffer: symbol, kBufferGen: symbol, kBufferCb: symbol } | undefined {
  const byName = new Map<string | undefined, symbol>()
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    byName.set(sym.description, sym)
  }
  const kBuffer = byName.get('kBuffer')
  const kBufferGen = byName.get('kBufferGen')
  const kBufferCb = byName.get('kBufferCb')
  if (kBuffer == null || kBufferGen == null || kBufferCb == null) {
    return undefined
  }
  const fields = socket as unknown as Record<symbol, unknown>
  if (fields[kBuffer] != null || fields[kBufferGen] != null || fields[kBufferCb] != null) {
    return undefined
  }
  return { kBuffer, kBufferGen, kBufferCb }
}

/** Switch `socket` to reading into `init.buffer()`; false (nothing changed) where this node does not allow it. */
export function readInPlace (socket: Socket, init: ReadInPlaceInit): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: unknown } })._handle
  if (handle == null || typeof handle.useUserBuffer !== 'function' || socket.destroyed || socket.readableLength > 0) {
    return false
  }
  const keys = privateFields(socket)
  if (keys == null) {
    return false
  }
  const first = init.buffer()
  const fields = socket as unknown as Record<symbol, unknown>
  fields[keys.kBuffer] = first
  fields[keys.kBufferGen] = () => init.buffer()
  fields[keys.kBufferCb] = (n: number, buf: Uint8Array) => init.callback(n, buf)
  handle.useUserBuffer(first)
  // with kBuffer set, pause() stops the handle reading (resume() restarts it)
  socket.pause()
  return true
}
