/** `blyd peers`: who serves which span of which model, and who this node is connected to. */
import { clientConfig, printJson, printTable } from '../context.ts'
import { connectOrFail } from '../daemon-or-offline.ts'
import { formatDuration } from '../format.ts'
import type { PeersParams, PeersResult } from '../../protocols/ipc-mesh.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

export function peersCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'peers',
    describe: 'list the live spans peers serve (model, layers, last seen, RTT, backend, capacity) and the open connections',
    builder: (y: Argv<any>) => y
      .option('model', { type: 'string', requiresArg: true, describe: 'only this model (id, or a unique prefix of >= 8); default every model on the local chain' })
      .option('json', { type: 'boolean', describe: 'print one JSON object' }),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const client = await connectOrFail(config)
      let result: PeersResult
      try {
        const params: PeersParams & Record<string, unknown> = typeof argv.model === 'string' ? { model: argv.model } : {}
        result = await client.request('peers', params)
      } finally {
        client.close()
      }
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const now = Date.now()
      const rows: Array<[string, string]> = result.spans.map(s => [
        `${s.model.slice(0, 12)} [${s.start}, ${s.end})`,
        `${s.peerId}${s.source === 'self' ? ' (self)' : ''}  seen ${formatDuration(Math.max(0, now - s.lastSeen))} ago  rtt ${s.rttMs == null ? '-' : `${s.rttMs} ms`}  ${s.backend}${s.adapter != null ? ` on ${s.adapter}` : ''}${s.memoryBytes != null ? `  memory ${s.memoryBytes} bytes` : ''}  ${s.tokensPerSecond.toFixed(1)} tok/s  ${s.freeSessions} free sessions  queue ${s.queueLength}${s.version != null ? `  version ${s.version.slice(0, 12)}` : ''}`
      ])
      if (rows.length === 0) {
        rows.push(['spans', result.models.length === 0 ? 'no model on the local chain' : 'none live'])
      }
      for (const c of result.connected) {
        rows.push(['connected', `${c.peerId} ${c.addrs.join(' ')}`])
      }
      printTable(ctx, rows)
    }
  }
}
