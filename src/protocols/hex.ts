/**
 * The hex form of ids, keys, hashes and signatures as IPC JSON, logs and
 * the docs write them: lowercase, two digits a byte. `toHex` reads a view
 * in place (no copy of the bytes); `fromHex` returns a plain Uint8Array
 * (not a Buffer) of its own.
 */
export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}
