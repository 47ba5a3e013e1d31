/** `blyd model import|list|show|logits|init-demo`: models on the chain, via the daemon or in-process. */
import { resolve } from 'node:path'
import { UsageError } from '../../daemon/errors.ts'
import { DEMO_DEFAULTS } from '../../model/demo-defaults.ts'
import { formatUnitList } from '../../model/unit-list.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import { formatBytes } from '../format.ts'
import { chosenModel, modelArg } from '../model-choice.ts'
import { withLocalChain, withLocalInference } from '../model-local.ts'
import type { LogitsResult, ModelDetailsJson, ModelImportResult, ModelSummaryJson } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

const json = { json: { type: 'boolean', describe: 'print one JSON object' } } as const

/** --local, --backend and --workers, shared by the commands that run the model */
export const runOptions = {
  local: { type: 'boolean', describe: 'run in this process on the data dir\'s chain, without a daemon' },
  backend: { type: 'string', choices: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'], describe: 'tfjs backend (with a daemon: the one it must be running)' },
  workers: { type: 'string', requiresArg: true, describe: 'in-process runs: tensor-parallel worker threads, auto or 0..64 (a daemon uses its own: blyd start --workers)' }
} as const

/** --workers is for in-process runs; a daemon runs with the workers it was started with */
export function refuseWorkersOnline (argv: any): void {
  if (argv.workers !== undefined) {
    throw new UsageError('--workers applies to in-process runs (--local, or no daemon running); the daemon uses its own setting (blyd start --workers N)')
  }
}

/** "1,2,3" -> [1, 2, 3]; UsageError naming the flag otherwise */
export function parseIdList (text: unknown, flag: string): number[] {
  const parts = String(text ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
  if (parts.length === 0 || !parts.every(s => /^\d+$/.test(s))) {
    throw new UsageError(`${flag} must be comma-separated token ids like 1,2,3 (got ${JSON.stringify(String(text ?? ''))})`)
  }
  return parts.map(Number)
}

/** --version: pin a version of the model's history (yargs' own --version is off in the commands that take it) */
export const versionOption = {
  version: { type: 'string', requiresArg: true, describe: 'a version of the model\'s history: its id or a unique prefix of >= 8 hex characters (default: the live version)' }
} as const

/** The --version argument (hex, 8 to 64 characters), lowercased; undefined when not given. */
export function versionArg (value: unknown): string | undefined {
  if (value === undefined) {
    return undefined
  }
  const text = String(value)
  if (!/^[0-9a-fA-F]{8,64}$/.test(text)) {
    throw new UsageError(`--version must be a version id: 64 hex characters or a unique prefix of at least 8 (got ${JSON.stringify(text)})`)
  }
  return text.toLowerCase()
}

/** '' for a complete model, else " (incomplete: ...)" naming what is not stored here */
export function incompleteNote (m: ModelSummaryJson): string {
  if (m.complete) {
    return ''
  }
  const missing = m.missingUnits ?? []
  const parts: string[] = []
  if (m.manifestStored === false) {
    parts.push('manifest payload not stored')
  }
  if (missing.length > 0) {
    parts.push(`unit${missing.length === 1 ? '' : 's'} ${formatUnitList(missing)} missing`)
  }
  return parts.length > 0 ? ` (incomplete: ${parts.join('; ')})` : ' (incomplete)'
}

function importCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'import <dir>',
    describe: 'import a Hugging Face Qwen3 checkpoint folder as blocks (a manifest on chain A, one layer block per unit on chain B)',
    builder: (y: Argv<any>) => y
      .positional('dir', { type: 'string', describe: 'checkpoint folder: config.json, *.safetensors, tokenizer files' })
      .option('tokenizer', { type: 'string', requiresArg: true, describe: 'a tokenizer.json to use instead of the folder\'s (tokenizer_config.json beside it is used too)' })
      .option('name', { type: 'string', requiresArg: true, describe: 'model name in the manifest (default: the folder name)' })
      .options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const dir = resolve(String(argv.dir))
      const tokenizer = typeof argv.tokenizer === 'string' ? resolve(argv.tokenizer) : undefined
      const name = typeof argv.name === 'string' ? argv.name : undefined
      const { createProgressBar } = await import('../progress.ts')
      const bar = createProgressBar()
      let result: ModelImportResult
      try {
        result = await daemonOrOffline<ModelImportResult>(config, {
          online: async client => client.request('model.import', { dir, ...(tokenizer != null ? { tokenizer } : {}), ...(name != null ? { name } : {}) }, {
            onStream: p => { bar.update({ phase: String(p.phase), done: Number(p.done), total: Number(p.total) }) }
          }),
          offline: async dataDir => withLocalChain(dataDir, async (store, identity) => (await import('../../learning/model-genesis.ts')).importModelWithGenesis({
            store, signer: identity.signer, dir, tokenizer, name, onProgress: p => { bar.update(p) }
          }))
        })
      } finally {
        bar.stop()
      }
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      let note = result.existing > 0 ? ` (${result.existing} already on chain)` : ''
      if (result.existing === result.blocks) {
        note = ' (already on chain, nothing written)'
      }
      ctx.stderr(`imported ${result.name}: ${result.blocks} blocks, ${formatBytes(result.bytes)}${note}${result.tokenizer ? '' : '; no tokenizer: token ids only'}\n`)
      ctx.stdout(`${result.modelId}\n`)
    }
  }
}

function listCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'list',
    describe: 'the models on chain A and how much of each is stored locally',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const { models } = await daemonOrOffline<{ models: ModelSummaryJson[] }>(config, {
        online: async client => client.request('model.list'),
        offline: async dataDir => withLocalInference(dataDir, null, async service => ({ models: await service.list() }))
      })
      if (argv.json === true) {
        printJson(ctx, { models })
        return
      }
      const lines = models.map(m => `${m.id}  ${m.name}  ${m.unitsStored}/${m.units} units${incompleteNote(m)}${m.version != null ? `  version ${m.version.slice(0, 16)}` : ''}${m.loaded ? '  loaded' : ''}${m.randomWeights === true ? '  demo: RANDOM weights' : ''}`)
      ctx.stdout(lines.length === 0 ? '' : lines.join('\n') + '\n')
    }
  }
}

/** `model show`'s rows about the weights version (none from a node that reads no versions). */
function versionRows (d: ModelDetailsJson): Array<[string, string]> {
  if (d.version == null) {
    return []
  }
  const deltas = d.acceptedDeltas ?? []
  const units = [...new Set(deltas.map(a => a.unit))].sort((a, b) => a - b)
  return [
    ['version', `${d.version} (#${d.versionIndex ?? 0}${d.version === d.liveVersion ? ', live' : `, live is ${d.liveVersion ?? '?'}`})`],
    ['accepted deltas', `${deltas.length}${deltas.length > 0 ? ` (units ${formatUnitList(units)})` : ''}`],
    ['weights hash', d.weightsHash ?? 'unknown (some unit or delta is not stored here)']
  ]
}

function showCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'show <model>',
    describe: 'one model\'s config, tokenizer, layer blocks and weights version (the live one, or --version)',
    builder: (y: Argv<any>) => y.positional('model', { type: 'string', describe: 'model id (hex, or a unique prefix of >= 8)' }).version(false).options(versionOption).options(json),
    handler: async (argv: any) => {
      const model = modelArg(argv.model)
      const version = versionArg(argv.version)
      const config = await clientConfig(ctx, argv)
      const d = await daemonOrOffline<ModelDetailsJson>(config, {
        online: async client => client.request('model.show', { model, ...(version != null ? { version } : {}) }),
        offline: async dataDir => withLocalInference(dataDir, null, async service => service.show(model, version))
      })
      if (argv.json === true) {
        printJson(ctx, d)
        return
      }
      const c = d.config
      printTable(ctx, [
        ['id', d.id],
        ['name', d.name],
        ['arch', d.arch],
        ['author', d.author],
        ['layers', `${c.layers} (hidden ${c.hidden}, intermediate ${c.intermediate}, heads ${c.heads}/${c.kvHeads} kv, head dim ${c.headDim})`],
        ['vocab', `${c.vocab}${c.tieWordEmbeddings ? ', tied embeddings' : ''}`],
        ['parameters', `${d.parameters} (${d.dtypes.join(', ')}, ${formatBytes(d.bytes)})`],
        ['tokenizer', d.tokenizer.present ? `yes${d.tokenizer.chatTemplate ? ', chat template' : ''}` : 'none (token ids only)'],
        ['stored', `${d.unitsStored}/${d.units} units${incompleteNote(d)}`],
        ...versionRows(d),
        ...d.unitBlocks.map((u): [string, string] => [`unit ${u.unit}`, `${u.kind}${u.layer != null ? ` ${u.layer}` : ''}  ${u.block ?? 'missing'}${u.block != null && !u.stored ? ' (payload not stored)' : ''}`])
      ])
    }
  }
}

function logitsCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'logits',
    describe: 'the logits of every position for the given token ids (a fresh session)',
    builder: (y: Argv<any>) => y
      .option('model', { type: 'string', requiresArg: true, describe: 'model id (hex, or a unique prefix of >= 8); may be omitted when exactly one model is on chain' })
      .option('ids', { type: 'string', demandOption: true, requiresArg: true, describe: 'token ids, comma-separated' })
      .version(false)
      .options(versionOption)
      .options(runOptions)
      .options(json),
    handler: async (argv: any) => {
      const given = argv.model !== undefined ? modelArg(argv.model) : undefined
      const ids = parseIdList(argv.ids, '--ids')
      const version = versionArg(argv.version)
      const config = await clientConfig(ctx, argv, { backend: argv.backend, workers: argv.workers })
      const backend = typeof argv.backend === 'string' ? argv.backend : undefined
      const local = async (dataDir: string): Promise<LogitsResult> => withLocalInference(dataDir, config.backend, async service => service.logitsResult(await chosenModel(given, async () => service.list()), ids, undefined, version), config.workers)
      const result = argv.local === true
        ? await local(config.dataDir)
        : await daemonOrOffline<LogitsResult>(config, {
          online: async client => {
            refuseWorkersOnline(argv)
            const model = await chosenModel(given, async () => (await client.request('model.list')).models)
            return client.request('model.logits', { model, ids, ...(backend != null ? { backend } : {}), ...(version != null ? { version } : {}) })
          },
          offline: local
        })
      if (argv.json === true) {
        printJson(ctx, { logits: result.logits, backend: result.backend, ...(result.workers != null ? { workers: result.workers } : {}), ...(result.version != null ? { version: result.version } : {}) })
        return
      }
      const lines = result.logits.map((row, i) => {
        let best = 0
        for (let j = 1; j < row.length; j++) {
          if (row[j] > row[best]) {
            best = j
          }
        }
        return `${i}\t${ids[i]}\targmax ${best}\t${row[best]}`
      })
      ctx.stdout(lines.join('\n') + '\n')
    }
  }
}

/** The commands that follow `model init-demo`, keeping its --data-dir (quoted for a shell where needed). */
export function demoNextSteps (dir: string, dataDir: string | undefined, tokenizer: boolean): string {
  const q = (text: string): string => /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, '\'\\\'\'')}'`
  const dd = dataDir != null ? ` --data-dir ${q(dataDir)}` : ''
  const prompt = tokenizer ? '--prompt "Hello"' : '--prompt-ids 1,2,3'
  return 'next:\n' +
    `  blyd model import ${q(dir)}${dd}\n` +
    `  blyd start${dd}    (optional, in another terminal: without a daemon, commands run in-process)\n` +
    `  blyd generate ${prompt}${dd}\n` +
    (tokenizer ? `  blyd chat${dd}\n` : '')
}

function initDemoCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'init-demo <dir>',
    describe: 'write a small Qwen3 checkpoint with RANDOM weights (and the real Qwen3 tokenizer) to try the pipeline',
    builder: (y: Argv<any>) => y
      .positional('dir', { type: 'string', describe: 'folder to write' })
      .option('layers', { type: 'number', default: DEMO_DEFAULTS.layers, describe: 'decoder layers' })
      .option('hidden', { type: 'number', default: DEMO_DEFAULTS.hidden, describe: 'hidden size' })
      .option('heads', { type: 'number', default: DEMO_DEFAULTS.heads, describe: 'attention heads' })
      .option('kv-heads', { type: 'number', default: DEMO_DEFAULTS.kvHeads, describe: 'key/value heads' })
      .option('head-dim', { type: 'number', default: DEMO_DEFAULTS.headDim, describe: 'head dimension' })
      .option('intermediate', { type: 'number', default: DEMO_DEFAULTS.intermediate, describe: 'MLP intermediate size' })
      .option('vocab', { type: 'number', describe: `vocabulary size (default ${DEMO_DEFAULTS.vocab}; >= 151669 with the tokenizer; with --merges the prefix's ids)` })
      .option('dtype', { type: 'string', choices: ['bf16', 'f32'], default: 'bf16', describe: 'stored dtype' })
      .option('tied', { type: 'boolean', default: DEMO_DEFAULTS.tieWordEmbeddings, describe: 'tie the output head to the embedding' })
      .option('tokenizer', { type: 'boolean', default: true, describe: 'copy the real Qwen3 tokenizer files (--no-tokenizer for a token-id-only model)' })
      .option('merges', { type: 'number', describe: 'cut the Qwen3 tokenizer to its first N BPE merges (Qwen3\'s ids below 256 + N, the special tokens after them): a smaller vocab and output head, e.g. to train on a CPU' })
      .option('seed', { type: 'number', default: DEMO_DEFAULTS.seed, describe: 'weights PRNG seed' })
      .options(json),
    handler: async (argv: any) => {
      const dir = resolve(String(argv.dir))
      const ints: Record<string, number> = {}
      for (const key of ['layers', 'hidden', 'heads', 'kvHeads', 'headDim', 'intermediate', 'vocab', 'seed', 'merges']) {
        const v = argv[key]
        if ((key === 'vocab' || key === 'merges') && v === undefined) {
          continue
        }
        // a seed may be any integer, merges 0 or more, the sizes 1 or more
        const min = ({ seed: -Infinity, merges: 0 } as Record<string, number>)[key] ?? 1
        if (!Number.isSafeInteger(v) || v < min) {
          throw new UsageError(`--${key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)} must be a ${min === 0 ? 'non-negative' : 'positive'} integer (got ${String(v)})`)
        }
        ints[key] = v
      }
      const [{ writeDemoCheckpoint }, { planUnits }] = await Promise.all([import('../../model/demo-checkpoint.ts'), import('../../model/qwen3/plan.ts')])
      const cfg = await writeDemoCheckpoint(dir, {
        layers: ints.layers,
        hidden: ints.hidden,
        heads: ints.heads,
        kvHeads: ints.kvHeads,
        headDim: ints.headDim,
        intermediate: ints.intermediate,
        ...(ints.vocab !== undefined ? { vocab: ints.vocab } : {}),
        ...(ints.merges !== undefined ? { merges: ints.merges } : {}),
        seed: ints.seed,
        dtype: argv.dtype === 'f32' ? 'F32' : 'BF16',
        tieWordEmbeddings: argv.tied === true,
        tokenizer: argv.tokenizer !== false
      })
      const parameters = planUnits(cfg).flatMap(u => u.tensors).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0)
      if (argv.json === true) {
        printJson(ctx, { dir, randomWeights: true, layers: cfg.numLayers, hidden: cfg.hiddenSize, vocab: cfg.vocabSize, parameters, tokenizer: argv.tokenizer !== false })
        return
      }
      ctx.stdout(`wrote a demo checkpoint with RANDOM weights (not a trained model: its output is meaningless) to ${dir}\n` +
        `${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize}, ${parameters} parameters\n` +
        demoNextSteps(dir, typeof argv.dataDir === 'string' ? resolve(argv.dataDir) : undefined, argv.tokenizer !== false))
    }
  }
}

export function modelCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'model',
    describe: 'import, list and inspect models on the chain',
    builder: (y: Argv<any>) => y
      .command(importCommand(ctx))
      .command(listCommand(ctx))
      .command(showCommand(ctx))
      .command(logitsCommand(ctx))
      .command(initDemoCommand(ctx))
      .demandCommand(1, 'name a model command: import, list, show, logits or init-demo'),
    handler: () => {}
  }
}
