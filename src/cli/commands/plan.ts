/** `blyd plan`: coverage per layer (holders, tokens/s), the bottleneck, and what the partition planner would do. */
import { clientConfig, printJson, printTable } from '../context.ts'
import { connectOrFail } from '../daemon-or-offline.ts'
import type { MetricsJson, PlanParams, PlanResult } from '../../protocols/ipc-mesh.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

function short (peerId: string): string {
  return peerId.length > 16 ? `…${peerId.slice(-10)}` : peerId
}

function metrics (m: MetricsJson): string {
  const missing = m.uncoveredLayers.length > 0 ? `  uncovered ${m.uncoveredLayers.join(',')}` : ''
  return `bottleneck layer ${m.bottleneckLayer} at ${m.bottleneckTokensPerSecond.toFixed(2)} tok/s (bound ${m.throughputBound.toFixed(2)})  min holders ${m.minHolders}${m.replicasMet ? '' : ' (short of replicas)'}${missing}`
}

/** one row per planned node: its span, memory, backend and GPU adapter */
function nodeRows (result: PlanResult): Array<[string, string]> {
  return result.nodes.map(n => [
    `node ${short(n.peerId)}${n.self ? ' (self)' : ''}`,
    `${n.start != null ? `[${n.start}, ${n.end ?? '?'})` : 'idle'}  memory ${n.memoryBytes} bytes${n.memoryEstimated ? ' (estimated)' : ''}  ${n.backend ?? '-'}${n.adapter != null ? ` on ${n.adapter}` : ''}`
  ])
}

export function planCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'plan',
    describe: 'show layer coverage (holders, tokens/s per layer), the bottleneck, and the spans and moves the planner proposes',
    builder: (y: Argv<any>) => y
      .option('model', { type: 'string', requiresArg: true, describe: 'the model (id, or a unique prefix of >= 8); default the one this node serves' })
      .option('replicas', { type: 'number', requiresArg: true, describe: 'holders wanted per layer (default the config\'s replicas)' })
      .option('idle-peers', { type: 'boolean', describe: 'plan connected peers that serve nothing yet as nodes too' })
      .option('json', { type: 'boolean', describe: 'print one JSON object' }),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const client = await connectOrFail(config)
      let result: PlanResult
      try {
        const params: PlanParams & Record<string, unknown> = {
          ...(typeof argv.model === 'string' ? { model: argv.model } : {}),
          ...(typeof argv.replicas === 'number' ? { replicas: argv.replicas } : {}),
          ...(argv.idlePeers === true ? { idlePeers: true } : {})
        }
        result = await client.request('plan', params)
      } finally {
        client.close()
      }
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const rows: Array<[string, string]> = [
        ['model', `${result.model} (${result.layers} layers, replicas ${result.replicas}, memory ${result.memoryBytes} bytes per node${result.memoryEstimated ? ', estimated' : ''})`],
        ['this node', `${result.backend ?? 'no backend'}${result.adapter != null ? ` on ${result.adapter}` : ''}`]
      ]
      rows.push(...nodeRows(result))
      for (const c of result.coverage) {
        rows.push([`layer ${c.layer}`, `${c.tokensPerSecond.toFixed(2)} tok/s  ${c.holders.length} holder${c.holders.length === 1 ? '' : 's'}${c.holders.length > 0 ? ': ' + c.holders.map(short).join(' ') : ''}`])
      }
      rows.push(['now', metrics(result.current)])
      for (const m of result.moves) {
        rows.push([`move ${m.reason}`, `${short(m.id)} ${m.from != null ? `[${m.from.start}, ${m.from.end})` : '-'} -> ${m.to != null ? `[${m.to.start}, ${m.to.end})` : '-'}`])
      }
      rows.push(['after moves', metrics(result.afterMoves)])
      rows.push(['from scratch', result.proposed.spans.map(s => `${short(s.id)}[${s.start}, ${s.end})`).join(' ')])
      rows.push(['', metrics(result.proposed.metrics)])
      printTable(ctx, rows)
    }
  }
}
