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

/** The body's bytes; HttpApiError BODY_TOO_LARGE past maxBytes. */
export async function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared != null && Number(declared) > maxBytes) {
    throw new HttpApiError(HttpErrorCode.BODY_TOO_LARGE, `the request body is ${declared} bytes, over the limit of ${maxBytes} (httpMaxBodyBytes)`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength
    if (size > maxBytes) {
      throw new HttpApiError(HttpErrorCode.BODY_TOO_LARGE, `the request body is over the limit of ${maxBytes} bytes (httpMaxBodyBytes)`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks, size)
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
