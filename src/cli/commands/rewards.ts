/**
 * `blyd rewards balance|history|explain|send|verify`: a model's BLY ledger
 * (docs/ledger.md), through the running daemon or offline on the data dir.
 * Amounts are whole base units (decimal strings in JSON).
 */
import { clientConfig, printJson, printTable } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import { withLocalChain } from '../model-local.ts'
import type { ChainStoreApi } from '../../chain/types.ts'
import type {
  RewardsBalanceResult, RewardsExplainParams, RewardsExplainResult, RewardsHistoryResult, RewardsParams, RewardsSendParams, RewardsSendResult, RewardsVerifyResult
} from '../../protocols/ipc-ledger.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

const json = { json: { type: 'boolean', describe: 'print one JSON object' } } as const
const model = { model: { type: 'string', requiresArg: true, describe: 'model id (hex or a unique prefix of >= 8): each model has its own ledger (default: the only model on chain A)' } } as const
const peer = { peer: { type: 'string', requiresArg: true, describe: 'a peer id (12D3KooW...) or a 64-hex Ed25519 public key (default: this node)' } } as const

/**
 * The ledger's code for an offline command, loaded only when one runs: the
 * CLI's start-up loads no chain or ledger code for commands that go to the
 * daemon (README, What is measured: cli-startup).
 */
async function offlineLedger (store: ChainStoreApi): Promise<{ ledger: import('../../learning/ledger/service.ts').LedgerService, commands: typeof import('../../learning/ledger/commands.ts') }> {
  const [{ LedgerService }, commands] = await Promise.all([import('../../learning/ledger/service.ts'), import('../../learning/ledger/commands.ts')])
  return { ledger: new LedgerService({ store: () => store }), commands }
}

function rewardsParams (argv: any): RewardsParams {
  return {
    ...(argv.peer !== undefined ? { peer: String(argv.peer) } : {}),
    ...(argv.model !== undefined ? { model: String(argv.model) } : {})
  }
}

function short (hex: string | null): string {
  return hex == null ? 'minted' : hex.slice(0, 12)
}

function balanceCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'balance',
    describe: 'a key\'s BLY balance on a model\'s ledger, in base units',
    builder: (y: Argv<any>) => y.options({ ...peer, ...model, ...json }),
    handler: async (argv: any) => {
      const params = rewardsParams(argv)
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<RewardsBalanceResult>(config, {
        online: async client => client.request('rewards.balance', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async (store, identity) => { const { ledger, commands } = await offlineLedger(store); return commands.rewardsBalance(ledger, identity.publicKey, params) })
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      printTable(ctx, [['model', result.model], ['peer', result.peer], ['balance', result.balance], ['minted', result.minted]])
    }
  }
}

function historyCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'history',
    describe: 'every ledger entry paying or paid to a key, in fold order, with its balance after each',
    builder: (y: Argv<any>) => y.options({ ...peer, ...model, ...json }),
    handler: async (argv: any) => {
      const params = rewardsParams(argv)
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<RewardsHistoryResult>(config, {
        online: async client => client.request('rewards.history', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async (store, identity) => { const { ledger, commands } = await offlineLedger(store); return commands.rewardsHistory(ledger, identity.publicKey, params) })
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const lines = result.entries.map(e => {
        const change = e.change.startsWith('-') || e.change === '0' ? e.change : `+${e.change}`
        const state = e.applied ? '' : `  (skipped: ${e.reason ?? '?'}, ${e.amount})`
        return `${change.padStart(12)}  ${e.balanceAfter.padStart(16)}  ${e.kind.padEnd(9)} ${short(e.from)} -> ${short(e.to)}  ${e.id}${state}`
      })
      ctx.stdout(`${result.peer} on ${result.model.slice(0, 12)}: balance ${result.balance}\n${lines.join('\n')}${lines.length > 0 ? '\n' : ''}`)
    }
  }
}

function explainCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'explain <entry>',
    describe: 'one ledger entry and the blocks that produced it',
    builder: (y: Argv<any>) => y
      .positional('entry', { type: 'string', describe: 'an entry id from rewards history (receipt:..., transfer:..., genesis:..., proposal:..., validator:..., fee:...) or a unique prefix' })
      .options({ ...model, ...json }),
    handler: async (argv: any) => {
      const params: RewardsExplainParams = { entry: String(argv.entry), ...(argv.model !== undefined ? { model: String(argv.model) } : {}) }
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<RewardsExplainResult>(config, {
        online: async client => client.request('rewards.explain', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async store => { const { ledger, commands } = await offlineLedger(store); return commands.rewardsExplain(ledger, params) })
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const e = result.entry
      const rows: Array<[string, string]> = [
        ['entry', e.id],
        ['kind', e.kind],
        ['outcome', e.applied ? 'applied' : `skipped (${e.reason ?? '?'})`],
        ['from', e.from ?? 'minted'],
        ['to', e.to],
        ['amount', e.amount]
      ]
      if (result.receipt != null) {
        const r = result.receipt
        rows.push(['receipt', `${r.positions} positions x layers [${r.layerStart}, ${r.layerEnd}) x price ${r.priceLayerPosition ?? '-'}; ${r.tokens} tokens; nonce ${r.nonce}; session ${r.session}`])
      }
      if (result.proposal != null) {
        rows.push(['proposal', `${result.proposal.id} ${result.proposal.status} (${result.proposal.reason}), ${result.proposal.accepts} accepts, ${result.proposal.rejects} rejects`])
      }
      for (const b of result.blocks) {
        rows.push(['block', `${b.id} ${b.type} by ${b.author.slice(0, 12)} depth ${b.depth}`])
      }
      printTable(ctx, rows)
    }
  }
}

function sendCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'send',
    describe: 'move BLY from this node to another key: a Transfer block signed by this node',
    builder: (y: Argv<any>) => y
      .option('to', { type: 'string', demandOption: true, requiresArg: true, describe: 'the recipient: a peer id (12D3KooW...) or a 64-hex Ed25519 public key' })
      .option('amount', { type: 'string', demandOption: true, requiresArg: true, describe: 'whole base units, 1 .. 2^64 - 1' })
      .options({ ...model, ...json }),
    handler: async (argv: any) => {
      const params: RewardsSendParams = { to: String(argv.to), amount: String(argv.amount), ...(argv.model !== undefined ? { model: String(argv.model) } : {}) }
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<RewardsSendResult>(config, {
        online: async client => client.request('rewards.send', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async (store, identity) => { const { ledger, commands } = await offlineLedger(store); return commands.rewardsSend(ledger, store, identity.signer, params) })
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      ctx.stderr(`sent ${result.amount} to ${result.to} (nonce ${result.nonce}); balance ${result.balanceBefore} -> ${result.balanceAfter}\n`)
      ctx.stdout(`${result.transfer}\n`)
    }
  }
}

function verifyCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'verify',
    describe: 'fold every model\'s ledger again from the blocks, re-verify every receipt signature and check every invariant; exit 1 on a violation',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<RewardsVerifyResult>(config, {
        online: async client => client.request('rewards.verify'),
        offline: async dataDir => withLocalChain(dataDir, async store => { const { ledger, commands } = await offlineLedger(store); return commands.rewardsVerify(ledger) })
      })
      ctx.exitCode = result.ok ? 0 : 1
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const rows: Array<[string, string]> = result.models.map(m => [
        m.model.slice(0, 12),
        `${m.ok ? 'ok' : 'VIOLATED'}: ${m.blocks} blocks, ${m.receiptsPaid} receipts paid (${m.receiptsSkipped} skipped), ${m.transfersApplied} transfers (${m.transfersSkipped} skipped), minted ${m.minted}, paid ${m.paid}, ${m.accounts} accounts, ${m.checks} checks${m.problems.length > 0 ? `, ${m.problems.length} blocks not judged` : ''}`
      ])
      for (const m of result.models) {
        for (const v of m.violations) {
          rows.push([m.model.slice(0, 12), `${v.invariant}: ${v.message}`])
        }
      }
      printTable(ctx, rows.length > 0 ? rows : [['ledger', 'no model on chain A']])
    }
  }
}

export function rewardsCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'rewards',
    describe: 'BLY balances, history and transfers: the ledger folded from chain A',
    builder: (y: Argv<any>) => y
      .command(balanceCommand(ctx))
      .command(historyCommand(ctx))
      .command(explainCommand(ctx))
      .command(sendCommand(ctx))
      .command(verifyCommand(ctx))
      .demandCommand(1, 'name a rewards command: balance, history, explain, send or verify'),
    handler: () => {}
  }
}
