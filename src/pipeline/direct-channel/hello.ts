/**
 * The first bytes on a direct channel, after the TLS handshake: the client
 * sends HELLO (magic, version, the offer's token), the server answers one
 * ACCEPT byte or closes the socket. Infer frames follow.
 */
import { TOKEN_BYTES } from './constants.ts'

/** 'blyD' */
const MAGIC = [0x62, 0x6c, 0x79, 0x44] as const
export const HELLO_VERSION = 1
export const HELLO_BYTES = MAGIC.length + 1 + TOKEN_BYTES
export const ACCEPT_BYTE = 0x01

export function encodeHello (token: Uint8Array): Uint8Array {
  const out = new Uint8Array(HELLO_BYTES)
  out.set(MAGIC, 0)
  out[MAGIC.length] = HELLO_VERSION
  out.set(token, MAGIC.length + 1)
  return out
}

/** The token of a well-formed hello, or undefined. */
export function decodeHello (bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length !== HELLO_BYTES || MAGIC.some((b, i) => bytes[i] !== b) || bytes[MAGIC.length] !== HELLO_VERSION) {
    return undefined
  }
  return bytes.subarray(MAGIC.length + 1)
}
