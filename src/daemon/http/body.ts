/**
 * Reading a request body as JSON within bounds: at most maxBytes (a longer
 * declared Content-Length is refused before a byte is read; a body growing
 * past it is refused as soon as it does), then a linear scan for nesting
 * depth and value count (json-scan.ts) before JSON.parse, so no body makes
 * the daemon hold or parse more than those bounds allow.
 */
import { scanJson } from '../json-scan.ts'
import { HttpApiError, HttpErrorCode } from './errors.ts'
import type { IncomingMessage } from 'node:http'

export interface JsonBodyLimits {
  maxBytes: number
  maxDepth: number
  maxValues: number
}

/**
 * The body's bytes; HttpApiError BODY_TOO_LARGE past maxBytes. A body found
 * too long is left unread, not destroyed (destroying the request would
 * take the socket, and the 413 with it): the listener answers, then reads
 * and drops the rest for a bounded time (http-api.ts).
 */
export async function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared != null && Number(declared) > maxBytes) {
    throw new HttpApiError(HttpErrorCode.BODY_TOO_LARGE, `the request body is ${declared} bytes, over the limit of ${maxBytes} (httpMaxBodyBytes)`)
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength
      if (size > maxBytes) {
        done()
        req.pause()
        reject(new HttpApiError(HttpErrorCode.BODY_TOO_LARGE, `the request body is over the limit of ${maxBytes} bytes (httpMaxBodyBytes)`))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      done()
      resolve(Buffer.concat(chunks, size))
    }
    const onError = (err: Error): void => {
      done()
      reject(err)
    }
    const onClose = (): void => {
      done()
      reject(new Error('the client closed the connection before its request body ended'))
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
  })
}

/** The body parsed as JSON; HttpApiError BODY_TOO_LARGE or BAD_JSON. */
export async function readJsonBody (req: IncomingMessage, limits: JsonBodyLimits): Promise<unknown> {
  const bytes = await readBody(req, limits.maxBytes)
  if (bytes.byteLength === 0) {
    throw new HttpApiError(HttpErrorCode.BAD_JSON, 'the request has no body: send a JSON object')
  }
  const scan = scanJson(bytes, { maxDepth: limits.maxDepth, maxValues: limits.maxValues, maxBatch: limits.maxValues })
  if (scan.refused === 'depth') {
    throw new HttpApiError(HttpErrorCode.BAD_JSON, `the request body is nested deeper than ${limits.maxDepth} levels`)
  }
  if (scan.refused != null) {
    throw new HttpApiError(HttpErrorCode.BAD_JSON, `the request body holds more than ${limits.maxValues} JSON values`)
  }
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch (err: any) {
    throw new HttpApiError(HttpErrorCode.BAD_JSON, `the request body is not valid JSON (${String(err?.message ?? err)})`)
  }
}
