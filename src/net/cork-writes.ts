/**
 * Batches a TCP connection's socket writes per tick. Under Noise + Yamux one
 * 16 KiB stream message becomes 4 socket writes (Noise length prefix, the
 * encrypted yamux header and data, the tag) and the receiver answers each
 * data frame with a yamux window update (2 more writes); with TCP_NODELAY
 * each write is its own syscall and segment, and each segment its own
 * `data` event at the other end. Corking the socket on the first write of a
 * tick and uncorking it on process.nextTick sends everything written in that
 * tick with one writev: no delay added (the flush runs before any I/O).
 *
 * It wraps a connection encrypter (the encrypter is the first layer that
 * sees the raw connection). Connections whose `socket` is not a node:net
 * Socket (other transports) pass through untouched.
 */
import { Socket } from 'node:net'
import type { ConnectionEncrypter, MessageStream, SecureConnectionOptions, SecuredConnection } from '@libp2p/interface'

type EncrypterFactory<Components> = (components: Components) => ConnectionEncrypter

/** The same encrypter, on connections whose TCP socket is corked per tick. */
export function corkWrites<Components> (factory: EncrypterFactory<Components>): EncrypterFactory<Components> {
  return (components: Components): ConnectionEncrypter => {
    const encrypter = factory(components)
    return {
      protocol: encrypter.protocol,
      async secureInbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        return encrypter.secureInbound(corkConnection(connection), options)
      },
      async secureOutbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        return encrypter.secureOutbound(corkConnection(connection), options)
      }
    }
  }
}

/** Patch `connection.send` to cork its socket until the next tick; returns the connection. */
export function corkConnection (connection: MessageStream): MessageStream {
  const socket: unknown = (connection as { socket?: unknown }).socket
  if (!(socket instanceof Socket)) {
    return connection
  }
  const send = connection.send.bind(connection)
  const uncork = (): void => {
    socket.uncork()
  }
  connection.send = (data): boolean => {
    if (socket.writableCorked === 0 && !socket.destroyed) {
      socket.cork()
      process.nextTick(uncork)
    }
    return send(data)
  }
  return connection
}
