/** `blyd status`: what the running daemon is doing. */
import { aloneHint } from '../../daemon/alone-hint.ts'
import { describeAdapter } from '../../model/webgpu-adapter.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { connectOrFail } from '../daemon-or-offline.ts'
import { formatDuration } from '../format.ts'
import type { StatusResult } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

/** the backend that runs, then why each one tried before it did not */
function backendLine (status: StatusResult): string {
  const inf = status.inference
  if (inf == null) {
    return status.backend
  }
  const failed = inf.tried.filter(t => !t.ok).map(t => `${t.name}: ${t.reason ?? 'failed'}`)
  const adapter = inf.adapter != null ? ` on ${describeAdapter(inf.adapter)}` : ''
  const head = (inf.name != null ? `${inf.name}${adapter}` : null) ?? `none (${inf.error ?? 'not started'})`
  return `${head} (preference ${inf.preference}${failed.length > 0 ? `; not used: ${failed.join('; ')}` : ''})`
}

/** wasm only: whether the weights sit on huge pages, and why not */
function hugePagesLine (status: StatusResult): string {
  const h = status.inference?.hugePages
  if (h == null) {
    return '-'
  }
  return `${h.active ? 'on' : 'off'} (THP ${h.thp}${h.reason != null ? `; ${h.reason}` : ''})`
}

function servingLine (status: StatusResult): string {
  const s = status.serving
  if (s == null) {
    return '-'
  }
  const span = s.start != null ? ` layers [${s.start}, ${s.end})` : ` layers ${s.layers}`
  const version = s.version != null ? `, version ${s.version.slice(0, 12)}` : ''
  const switching = s.switching != null ? `, switching to ${s.switching.version.slice(0, 12)} (${s.switching.detail})` : ''
  const draining = (s.draining ?? []).map(d => `, draining ${d.version?.slice(0, 12) ?? 'old span'} (${d.sessions} sessions)`).join('')
  const weights = s.weights != null ? `, weights ${formatMiB(s.weights.bytes)} in ${s.weights.copies} cop${s.weights.copies === 1 ? 'y' : 'ies'} (bound ${formatMiB(s.weights.boundBytes)})` : ''
  return `${s.model.slice(0, 12)}${span}: ${s.state}${s.detail != null ? ` (${s.detail})` : ''}${version}${s.sessions != null ? `, ${s.sessions} sessions, ${s.steps ?? 0} steps` : ''}${weights}${switching}${draining}`
}

function formatMiB (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/** the validator service: what it measures now, what it attested, its last error */
function validatorLine (status: StatusResult): string {
  const v = status.learning?.validator
  if (v == null) {
    return '-'
  }
  if (v.models.length === 0) {
    return 'not a validator of any model on chain'
  }
  const now = v.validating != null ? `validating ${v.validating.proposal.slice(0, 12)} (${v.validating.phase})` : 'idle'
  const last = v.last != null ? `; last: ${v.last.proposal.slice(0, 12)} ${v.last.verdict} (${v.last.reason}) in ${v.last.ms} ms` : ''
  const error = v.lastError != null ? `; last error: ${v.lastError.code}: ${v.lastError.message}` : ''
  return `${v.models.length} model(s), ${now}, ${v.attested} attested${last}${v.waiting.length > 0 ? `, ${v.waiting.length} waiting` : ''}${error}`
}

function workersLine (status: StatusResult): string {
  const w = status.workers
  if (w == null) {
    return '-'
  }
  const used = [
    ...w.loaded.map(m => `${m.model.slice(0, 12)} ${m.workers}`),
    ...(w.serving != null ? [`serving ${w.serving}`] : [])
  ]
  return `${w.setting} (${w.cores} cores)${used.length > 0 ? `; in use: ${used.join(', ')}` : ''}`
}

/** this node's BLY balance per model and its receipts not yet published */
function ledgerLine (status: StatusResult): string {
  const l = status.ledger
  if (l == null) {
    return '-'
  }
  const balances = l.balances.map(b => `${b.balance} on ${b.model.slice(0, 12)}`).join(', ') || 'no model'
  return `${balances}; ${l.pendingReceipts} receipts pending${l.error != null ? ` (${l.error})` : ''}`
}

export function statusCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'status',
    describe: 'show the running daemon\'s identity, uptime and chain',
    builder: (y: Argv<any>) => y.option('json', { type: 'boolean', describe: 'print one JSON object' }),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const client = await connectOrFail(config)
      let status: StatusResult
      try {
        status = await client.request('status')
      } finally {
        client.close()
      }
      if (argv.json === true) {
        printJson(ctx, status)
        return
      }
      const errors = Object.values(status.ipc.errors).reduce((a, b) => a + b, 0)
      printTable(ctx, [
        ['peer id', status.peerId],
        ['pid', String(status.pid)],
        ['version', status.version],
        ['uptime', formatDuration(status.uptimeMs)],
        ['data dir', status.dataDir],
        ['backend', backendLine(status)],
        ['huge pages', hugePagesLine(status)],
        ['workers', workersLine(status)],
        ['chain A', `${status.chain.counts.A} blocks, tips ${status.chain.tips.A.join(' ') || '-'}`],
        ['chain B', `${status.chain.counts.B} blocks, tips ${status.chain.tips.B.join(' ') || '-'}`],
        ['orphans', String(status.chain.counts.orphans)],
        ['addrs', (status.addrs ?? []).join(' ') || '-'],
        ['connections', String(status.connections ?? 0)],
        ...(status.bootstrapPeers === 0 && (status.connections ?? 0) === 0 ? [['alone', aloneHint(status.addrs ?? [])] satisfies [string, string]] : []),
        ['serving', servingLine(status)],
        ['rewards', ledgerLine(status)],
        ['http', status.http != null ? `${status.http.url}${status.http.keyRequired ? ' (bearer key required)' : ''}` : '-'],
        ['validator', validatorLine(status)],
        ['ipc', `${status.ipc.requests} requests, ${errors} errors`]
      ])
    }
  }
}
