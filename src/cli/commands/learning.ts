/**
 * The learning commands, via the daemon or offline on the data dir:
 * `blyd delta propose`, `blyd proposals`, `blyd proposal show`,
 * `blyd validators`. Offline, a proposal or a validator change is written
 * to the local chain and reaches peers when a daemon next syncs.
 */
import { resolve } from 'node:path'
import { UsageError } from '../../daemon/errors.ts'
import { DELTA_CODECS } from '../../protocols/delta.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { daemonOrOffline, withOfflineStore } from '../daemon-or-offline.ts'
import { formatBytes } from '../format.ts'
import { modelArg } from '../model-choice.ts'
import { withLocalChain } from '../model-local.ts'
import type { ProposalJson, ProposalsResult, ProposeParams, ProposeResultJson, ValidatorsParams, ValidatorsResult } from '../../protocols/ipc-learning.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

const json = { json: { type: 'boolean', describe: 'print one JSON object' } } as const
const modelOption = { model: { type: 'string', requiresArg: true, describe: 'model id (hex or a unique prefix of >= 8); default: the only model on chain' } } as const

function numberFlag (value: unknown, flag: string, check: (n: number) => boolean, what: string): number | undefined {
  if (value === undefined) {
    return undefined
  }
  const n = Number(value)
  if (String(value).trim() === '' || !check(n)) {
    throw new UsageError(`${flag} must be ${what} (got ${JSON.stringify(String(value))})`)
  }
  return n
}

function proposeCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'propose',
    describe: 'propose a checkpoint: one Delta block per changed unit against the live weights, and a Proposal the validators measure',
    builder: (y: Argv<any>) => y
      .option('model', modelOption.model)
      .option('checkpoint', { type: 'string', demandOption: true, requiresArg: true, describe: 'Hugging Face checkpoint folder of the model\'s architecture (config.json, *.safetensors)' })
      .option('dataset', { type: 'string', demandOption: true, requiresArg: true, describe: 'the dataset the validators sample (name or id prefix)' })
      .option('codec', { type: 'string', choices: [...DELTA_CODECS], describe: 'delta codec (default f32, lossless)' })
      .option('density', { type: 'string', requiresArg: true, describe: 'sparse: fraction of each tensor kept, (0, 1] (default 0.01)' })
      .option('rank', { type: 'string', requiresArg: true, describe: 'lowrank: rank of each 2-D tensor (default 16)' })
      .option('backend', { type: 'string', choices: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'], describe: 'offline: the tfjs backend the claimed losses run on' })
      .options(json),
    handler: async (argv: any) => {
      const params: ProposeParams = {
        checkpoint: resolve(String(argv.checkpoint)),
        dataset: String(argv.dataset),
        ...(argv.model !== undefined ? { model: modelArg(argv.model) } : {}),
        ...(argv.codec !== undefined ? { codec: argv.codec } : {})
      }
      const density = numberFlag(argv.density, '--density', n => n > 0 && n <= 1, 'a number in (0, 1]')
      const rank = numberFlag(argv.rank, '--rank', n => Number.isSafeInteger(n) && n >= 1 && n <= 0xffff, 'an integer from 1 to 65535')
      if (density !== undefined) {
        params.density = density
      }
      if (rank !== undefined) {
        params.rank = rank
      }
      const config = await clientConfig(ctx, argv, { backend: argv.backend })
      const r = await daemonOrOffline<ProposeResultJson>(config, {
        online: async client => client.request('delta.propose', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async (store, identity) => {
          // the claimed losses run the model: select the tfjs backend as `model logits` does
          const [{ createInferenceService }, { proposeCheckpoint }] = await Promise.all([import('../../model/inference-service.ts'), import('../../learning/delta-propose.ts')])
          const service = createInferenceService({ store: () => store, backend: config.backend, maxLoadedModels: 1 })
          await service.start()
          try {
            return await proposeCheckpoint({ store, signer: identity.signer, ...params })
          } finally {
            await service.stop()
          }
        })
      })
      if (argv.json === true) {
        printJson(ctx, r)
        return
      }
      ctx.stderr(`proposed ${r.deltaIds.length} delta(s) (${r.codec}, ${formatBytes(r.bytes)}, ${r.compressionRatio.toFixed(1)}x, max abs error ${r.maxAbsError}) against version ${r.base.slice(0, 12)}; ` +
        `claimed eval loss ${r.claimed.baseLoss.toFixed(4)} -> ${r.claimed.afterLoss.toFixed(4)} nats on ${r.claimed.windows} windows\n`)
      ctx.stdout(`${r.proposalId}\n`)
    }
  }
}

export function deltaCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'delta',
    describe: 'weight deltas: propose a better checkpoint to a model\'s validators',
    builder: (y: Argv<any>) => y
      .command(proposeCommand(ctx))
      .demandCommand(1, 'name a delta command: propose'),
    handler: () => {}
  }
}

/** the learning commands' chain queries (loaded when a command runs: they bring libp2p's key code) */
async function polCommands (): Promise<typeof import('../../learning/pol-commands.ts')> {
  return import('../../learning/pol-commands.ts')
}

type PeerIdOfKey = (key: string) => string

function proposalLine (p: ProposalJson, peerIdOfKey: PeerIdOfKey): string {
  const gain = p.gain != null ? ` gain ${(p.gain * 100).toFixed(2)}%` : ''
  return `${p.id}  ${p.model.slice(0, 12)}  ${p.status}${p.status === 'accepted' ? '' : ` (${p.reason})`}  ${p.accepts}/${p.quorum ?? '-'} accepts, ${p.rejects} rejects${gain}  by ${peerIdOfKey(p.author)}`
}

export function proposalsCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'proposals',
    describe: 'the proposals of a model (default: every model) and their status',
    builder: (y: Argv<any>) => y.option('model', modelOption.model).options(json),
    handler: async (argv: any) => {
      const model = argv.model !== undefined ? modelArg(argv.model) : undefined
      const config = await clientConfig(ctx, argv)
      const { listProposals, peerIdOfKey } = await polCommands()
      const result = await daemonOrOffline<ProposalsResult>(config, {
        online: async client => client.request('proposals', model != null ? { model } : {}),
        offline: async dataDir => withOfflineStore(dataDir, async store => listProposals(store, model != null ? { model } : {}))
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      ctx.stdout(result.proposals.length === 0 ? '' : result.proposals.map(p => proposalLine(p, peerIdOfKey)).join('\n') + '\n')
    }
  }
}

function attestationLine (a: ProposalJson['attestations'][number], peerIdOfKey: PeerIdOfKey): string {
  const numbers = a.windows != null ? `  ${a.windows} windows, loss ${a.baseLoss?.toFixed(4)} -> ${a.candidateLoss?.toFixed(4)}, gain ${a.gain != null ? (a.gain * 100).toFixed(2) + '%' : '-'}, t ${a.t != null ? a.t.toFixed(2) : '-'}` : ''
  const counted = a.counted ? `counts as ${a.effectiveVerdict} (${a.effectiveReason})` : `ignored (${a.ignored})`
  return `${peerIdOfKey(a.validator)}  ${a.verdict} (${a.reason})  ${counted}${numbers}`
}

function showCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'show <id>',
    describe: 'one proposal: its status (and the reason when rejected), its attestations and the gain',
    builder: (y: Argv<any>) => y
      .positional('id', { type: 'string', describe: 'proposal id (hex, or a unique prefix of >= 8)' })
      .option('model', modelOption.model)
      .options(json),
    handler: async (argv: any) => {
      const id = String(argv.id)
      const model = argv.model !== undefined ? modelArg(argv.model) : undefined
      const config = await clientConfig(ctx, argv)
      const { showProposal, peerIdOfKey } = await polCommands()
      const p = await daemonOrOffline<ProposalJson>(config, {
        online: async client => client.request('proposal.show', { id, ...(model != null ? { model } : {}) }),
        offline: async dataDir => withOfflineStore(dataDir, async store => showProposal(store, id, model != null ? { model } : {}))
      })
      if (argv.json === true) {
        printJson(ctx, p)
        return
      }
      printTable(ctx, [
        ['id', p.id],
        ['model', p.model],
        ['author', `${p.author} (${peerIdOfKey(p.author)})`],
        ['status', `${p.status}${p.status === 'accepted' ? `: version ${p.version ?? '-'}` : ` (${p.reason})`}`],
        ['base', p.base],
        ['dataset', p.dataset],
        ['deltas', p.deltas.map(d => `unit ${d.unit} ${d.codec} ${d.id.slice(0, 12)}`).join(', ')],
        ['claimed', `${Number(p.claimedBase) / 1e6} -> ${Number(p.claimedAfter) / 1e6} nats`],
        ['attestations', `${p.accepts} accept, ${p.rejects} reject, quorum ${p.quorum ?? '-'} of ${p.validators ?? '-'}`],
        ['gain', p.gain != null ? `${(p.gain * 100).toFixed(3)}%` : '-'],
        ...p.attestations.map((a, i): [string, string] => [`  ${i + 1}`, attestationLine(a, peerIdOfKey)])
      ])
    }
  }
}

export function proposalCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'proposal',
    describe: 'one proposal of a model',
    builder: (y: Argv<any>) => y
      .command(showCommand(ctx))
      .demandCommand(1, 'name a proposal command: show'),
    handler: () => {}
  }
}

export function validatorsCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'validators',
    describe: 'a model\'s validator set; --add/--remove KEY moves a change (a motion, or a vote for the identical pending one; 2/3 of the set must sign)',
    builder: (y: Argv<any>) => y
      .option('model', modelOption.model)
      .option('add', { type: 'string', requiresArg: true, describe: 'key to add: a peer id or a 64-hex Ed25519 public key' })
      .option('remove', { type: 'string', requiresArg: true, describe: 'key to remove' })
      .conflicts('add', 'remove')
      .options(json),
    handler: async (argv: any) => {
      const params: ValidatorsParams = {
        ...(argv.model !== undefined ? { model: modelArg(argv.model) } : {}),
        ...(argv.add !== undefined ? { add: String(argv.add) } : {}),
        ...(argv.remove !== undefined ? { remove: String(argv.remove) } : {})
      }
      const change = params.add != null || params.remove != null
      const config = await clientConfig(ctx, argv)
      const { changeValidators, listValidators, peerIdOfKey } = await polCommands()
      const r = await daemonOrOffline<ValidatorsResult>(config, {
        online: async client => client.request('validators', params),
        offline: async dataDir => change
          ? withLocalChain(dataDir, async (store, identity) => changeValidators(store, identity.signer, params))
          : withOfflineStore(dataDir, async store => listValidators(store, params))
      })
      if (argv.json === true) {
        printJson(ctx, r)
        return
      }
      if (r.published != null) {
        const p = r.published
        ctx.stderr(`${p.kind === 'motion' ? 'moved' : 'voted for'} ${p.change} ${peerIdOfKey(p.key)} (motion ${p.motion.slice(0, 12)})${p.applied ? ': applied' : ': waiting for more signatures of the set'}\n`)
      }
      const lines = r.validators.map(v => `${v.peerId}  ${v.key}`)
      lines.push(`quorum ${r.quorum ?? '-'} of ${r.validators.length}`)
      for (const m of r.pending) {
        lines.push(`pending ${m.kind} ${m.peerId ?? ''} (motion ${m.id.slice(0, 12)}): ${m.count}/${m.quorum ?? '-'} signatures`)
      }
      ctx.stdout(lines.join('\n') + '\n')
    }
  }
}
