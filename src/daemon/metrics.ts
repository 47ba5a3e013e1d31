/**
 * Prometheus metrics of one daemon, on a registry it owns (never the
 * prom-client global default registry).
 */
import { Counter, Gauge, Registry } from 'prom-client'
import type { ChainCounts } from '../chain/types.ts'
import type { IpcLoadJson } from '../protocols/ipc.ts'

/** One model's ledger totals as the metrics read them (from the daemon's last fold of it). */
export interface LedgerTotals {
  model: string
  minted: bigint
  paid: bigint
  receiptsPaid: number
  receiptsSkipped: number
}

export interface DaemonMetricsInit {
  /** read when scraped, for the ledger gauges (the last folds: a scrape folds nothing) */
  ledgerTotals?(): LedgerTotals[]
  /** read when scraped, for the chain block gauges */
  chainCounts?(): Promise<ChainCounts | undefined>
  /** read when scraped, for the IPC load gauges */
  ipcStats?(): IpcLoadJson
}

export class DaemonMetrics {
  readonly registry: Registry
  readonly ipcRequests: Counter<'method'>
  readonly ipcErrors: Counter<'rpc_code' | 'code'>
  readonly ipcRefusals: Counter<'reason'>
  readonly ipcBackpressurePauses: Counter
  readonly ipcConnections: Gauge
  readonly ipcPausedConnections: Gauge
  readonly ipcBufferedLineBytes: Gauge
  readonly blocksCreated: Counter<'chain'>
  readonly chainRejections: Counter<'code'>
  readonly chainBlocks: Gauge<'chain'>
  readonly ledgerMinted: Gauge<'model'>
  readonly ledgerPaid: Gauge<'model'>
  readonly ledgerReceipts: Gauge<'model' | 'outcome'>
  readonly ledgerReceiptEvents: Counter<'event'>

  constructor (init: DaemonMetricsInit = {}) {
    this.registry = new Registry()
    const registers = [this.registry]
    this.ipcRequests = new Counter({ name: 'blyd_ipc_requests_total', help: 'IPC requests by method', labelNames: ['method'], registers })
    this.ipcErrors = new Counter({ name: 'blyd_ipc_errors_total', help: 'IPC error responses by JSON-RPC code and blyd error code', labelNames: ['rpc_code', 'code'], registers })
    this.ipcRefusals = new Counter({ name: 'blyd_ipc_refusals_total', help: 'IPC work refused by a limit: connections, batches, depth, values (JSON values in a line), lines (unfinished-line budget)', labelNames: ['reason'], registers })
    this.ipcBackpressurePauses = new Counter({ name: 'blyd_ipc_backpressure_pauses_total', help: 'times an IPC connection stopped being read because its answers were not being read', registers })
    const ipcStats = init.ipcStats
    const ipcGauge = (name: string, help: string, read: (stats: IpcLoadJson) => number): Gauge => new Gauge({
      name,
      help,
      registers,
      collect () {
        const stats = ipcStats?.()
        if (stats != null) {
          this.set(read(stats))
        }
      }
    })
    this.ipcConnections = ipcGauge('blyd_ipc_connections', 'open IPC connections', s => s.connections)
    this.ipcPausedConnections = ipcGauge('blyd_ipc_paused_connections', 'IPC connections not read now (answers unread, or calls in flight at the cap)', s => s.pausedConnections)
    this.ipcBufferedLineBytes = ipcGauge('blyd_ipc_buffered_line_bytes', 'bytes of unfinished IPC request lines held over all connections', s => s.bufferedLineBytes)
    this.blocksCreated = new Counter({ name: 'blyd_chain_blocks_created_total', help: 'blocks this node authored', labelNames: ['chain'], registers })
    this.chainRejections = new Counter({ name: 'blyd_chain_rejections_total', help: 'blocks rejected by validation, by rule code', labelNames: ['code'], registers })
    const chainCounts = init.chainCounts
    this.chainBlocks = new Gauge({
      name: 'blyd_chain_blocks',
      help: 'blocks in the local store by chain',
      labelNames: ['chain'],
      registers,
      async collect () {
        const counts = await chainCounts?.().catch(() => undefined)
        if (counts != null) {
          this.set({ chain: 'A' }, counts.A)
          this.set({ chain: 'B' }, counts.B)
          this.set({ chain: 'orphans' }, counts.orphans)
        }
      }
    })
    const ledgerTotals = init.ledgerTotals
    const ledgerGauge = <L extends string>(name: string, help: string, labelNames: L[], set: (g: Gauge<L>, t: LedgerTotals) => void): Gauge<L> => new Gauge<L>({
      name,
      help,
      labelNames,
      registers,
      collect () {
        for (const t of ledgerTotals?.() ?? []) {
          set(this, t)
        }
      }
    })
    // base units as a float64: exact up to 2^53, the order of magnitude beyond (the exact values: blyd rewards verify)
    this.ledgerMinted = ledgerGauge('blyd_ledger_minted', 'BLY base units minted on a model\'s ledger (genesis, accepted proposals, agreeing validators), as of the daemon\'s last fold', ['model'], (g, t) => { g.set({ model: t.model }, Number(t.minted)) })
    this.ledgerPaid = ledgerGauge('blyd_ledger_paid', 'BLY base units clients paid stages for receipts on a model\'s ledger, as of the last fold', ['model'], (g, t) => { g.set({ model: t.model }, Number(t.paid)) })
    this.ledgerReceipts = ledgerGauge('blyd_ledger_receipts', 'receipts folded on a model\'s ledger by outcome (paid, skipped), as of the last fold', ['model', 'outcome'], (g, t) => {
      g.set({ model: t.model, outcome: 'paid' }, t.receiptsPaid)
      g.set({ model: t.model, outcome: 'skipped' }, t.receiptsSkipped)
    })
    this.ledgerReceiptEvents = new Counter({ name: 'blyd_ledger_receipts_total', help: 'receipts this node handled: cosigned (as a stage), signed (as a client), refused (a client\'s receipt this stage would not co-sign), published (in a Receipt block)', labelNames: ['event'], registers })
  }

  /** the Prometheus text exposition */
  async text (): Promise<string> {
    return this.registry.metrics()
  }
}
