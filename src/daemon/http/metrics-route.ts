/**
 * `GET /metrics`: the daemon's Prometheus registry as text (the same text
 * as IPC `metrics`), for a scraper. Asks for the bearer key like every
 * other route when one is set (Prometheus sends it with
 * `authorization: { credentials: KEY }`).
 */
import type { DaemonMetrics } from '../metrics.ts'
import type { HttpApi } from './http-api.ts'

export function registerMetricsRoute (api: HttpApi, metrics: DaemonMetrics): void {
  api.route({
    method: 'GET',
    path: '/metrics',
    handler: async ({ res }) => {
      const text = await metrics.text()
      res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text) })
      res.end(text)
    }
  })
}
