/**
 * The dashboard's routes on the HTTP listener: the page (`GET /` and
 * `GET /dashboard`) and its script and style (`GET /dashboard/*`, the files
 * of ./dashboard/ named in DASHBOARD_FILES, nothing else), served without
 * the bearer key; the JSON snapshot (`GET /v1/dashboard/snapshot`) and its
 * live event stream (`GET /v1/dashboard/events`), which ask for the key
 * when one is set (the page then asks the user for it). The files are read
 * once, at the first request for them. Every file goes out with a content
 * security policy that allows this origin's script and style only (no
 * inline script: data the page shows can never run).
 */
import { readFile } from 'node:fs/promises'
import { HttpApiError, HttpErrorCode } from './errors.ts'
import { sendJson } from './http-api.ts'
import { SseStream } from './sse.ts'
import type { DashboardFeed } from './dashboard-feed.ts'
import type { HttpApi } from './http-api.ts'
import type { ServerResponse } from 'node:http'

/** The page's files: name under /dashboard/ -> content type. */
export const DASHBOARD_FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8'
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache'
}

export function registerDashboardRoutes (api: HttpApi, feed: DashboardFeed): void {
  const files = new Map<string, Promise<Buffer>>()
  const send = async (res: ServerResponse, name: string): Promise<void> => {
    const type = Object.hasOwn(DASHBOARD_FILES, name) ? DASHBOARD_FILES[name] : undefined
    if (type == null) {
      throw new HttpApiError(HttpErrorCode.NOT_FOUND, `no dashboard file ${JSON.stringify(name)} (files: ${Object.keys(DASHBOARD_FILES).join(', ')})`)
    }
    let body = files.get(name)
    if (body == null) {
      body = readFile(new URL(`./dashboard/${name}`, import.meta.url))
      // a failed read is not kept: the next request tries again
      body.catch(() => { files.delete(name) })
      files.set(name, body)
    }
    const bytes = await body
    res.writeHead(200, { 'content-type': type, 'content-length': bytes.byteLength, ...SECURITY_HEADERS })
    res.end(bytes)
  }

  for (const path of ['/', '/dashboard']) {
    api.route({ method: 'GET', path, public: true, handler: async ({ res }) => { await send(res, 'index.html') } })
  }
  api.route({
    method: 'GET',
    path: '/dashboard/*',
    public: true,
    handler: async ({ res, url }) => { await send(res, url.pathname.slice('/dashboard/'.length)) }
  })
  api.route({
    method: 'GET',
    path: '/v1/dashboard/snapshot',
    handler: async ({ res }) => { sendJson(res, 200, await feed.snapshot()) }
  })
  api.route({
    method: 'GET',
    path: '/v1/dashboard/events',
    handler: async ({ res, signal }) => { await feed.follow(new SseStream(res), signal) }
  })
}
