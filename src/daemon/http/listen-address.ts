/**
 * The HTTP listener's address as configured (`--http-listen`): `HOST:PORT`,
 * `[IPV6]:PORT`, or a port alone (bound to HTTP_API_DEFAULTS.host,
 * 127.0.0.1). Port 0 asks the system for a free port (`blyd status` shows
 * the one bound).
 */
import { isIP } from 'node:net'
import { HTTP_API_DEFAULTS } from './constants.ts'

export interface HttpListenAddress {
  host: string
  port: number
}

const HOST_NAME = /^[0-9A-Za-z](?:[0-9A-Za-z.-]{0,251}[0-9A-Za-z])?$/

/** The address in `text`, or undefined when it is not one. */
export function parseHttpListen (text: string): HttpListenAddress | undefined {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text.trim())
  if (m == null) {
    return undefined
  }
  const port = Number(m[3])
  if (port > 65535) {
    return undefined
  }
  if (m[1] != null) {
    return isIP(m[1]) === 6 ? { host: m[1], port } : undefined
  }
  const host = m[2] ?? HTTP_API_DEFAULTS.host
  return HOST_NAME.test(host) ? { host, port } : undefined
}

/** `http://HOST:PORT` (brackets around an IPv6 host). */
export function httpUrl (address: HttpListenAddress): string {
  return `http://${isIP(address.host) === 6 ? `[${address.host}]` : address.host}:${address.port}`
}
