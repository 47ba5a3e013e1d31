/** `blyd data add|list|show`: datasets on chain A, via the daemon or offline. */
import { resolve } from 'node:path'
import { UsageError } from '../../daemon/errors.ts'
import { addDatasetFromFile, listDatasets, showDataset } from '../../learning/dataset-store.ts'
import { MAX_EVAL_PERMILLE, MAX_SPLIT_TOKENS, MIN_SPLIT_TOKENS } from '../../protocols/dataset.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { daemonOrOffline, withOfflineStore } from '../daemon-or-offline.ts'
import { formatBytes } from '../format.ts'
import { modelArg } from '../model-choice.ts'
import { withLocalChain } from '../model-local.ts'
import type { DataAddParams, DataListResult, DatasetJson } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

const json = { json: { type: 'boolean', describe: 'print one JSON object' } } as const

/** an integer flag in [min, max], or undefined when not given; UsageError naming the flag otherwise */
function integerFlag (value: unknown, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) {
    return undefined
  }
  const text = String(value)
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(`${flag} must be an integer from ${min} to ${max} (got ${JSON.stringify(text)})`)
  }
  return n
}

function windowsText (d: DatasetJson): string {
  if (d.trainWindows == null || d.evalWindows == null) {
    return d.format === 'text' ? '- (text: give --model to count them with its tokenizer)' : '-'
  }
  return `${d.trainWindows} train, ${d.evalWindows} eval (${d.splitTokens} tokens each, eval ${d.evalPermille / 10}%)`
}

function addCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'add <file>',
    describe: 'store a corpus as a Dataset block on chain A: UTF-8 text, or JSONL token ids ({"ids": [...]} per line)',
    builder: (y: Argv<any>) => y
      .positional('file', { type: 'string', describe: 'the corpus; .jsonl is read as ids unless --format says otherwise' })
      .option('name', { type: 'string', demandOption: true, requiresArg: true, describe: 'dataset name: 1-64 of A-Z a-z 0-9 . _ -' })
      .option('model', { type: 'string', requiresArg: true, describe: 'model id (hex or a unique prefix of >= 8): ids are checked against its vocabulary (default: the only model on chain); text windows are counted with its tokenizer' })
      .option('format', { type: 'string', choices: ['text', 'ids'], describe: 'text or ids (default: from the extension)' })
      .option('eval-permille', { type: 'string', requiresArg: true, describe: `eval windows per thousand, 0..${MAX_EVAL_PERMILLE} (default 100)` })
      .option('split-tokens', { type: 'string', requiresArg: true, describe: `tokens per window, ${MIN_SPLIT_TOKENS}..${MAX_SPLIT_TOKENS} (default 128)` })
      .options(json),
    handler: async (argv: any) => {
      const params: DataAddParams = {
        path: resolve(String(argv.file)),
        name: String(argv.name),
        ...(argv.model !== undefined ? { model: modelArg(argv.model) } : {}),
        ...(argv.format !== undefined ? { format: argv.format } : {})
      }
      const evalPermille = integerFlag(argv.evalPermille, '--eval-permille', 0, MAX_EVAL_PERMILLE)
      const splitTokens = integerFlag(argv.splitTokens, '--split-tokens', MIN_SPLIT_TOKENS, MAX_SPLIT_TOKENS)
      if (evalPermille !== undefined) {
        params.evalPermille = evalPermille
      }
      if (splitTokens !== undefined) {
        params.splitTokens = splitTokens
      }
      const config = await clientConfig(ctx, argv)
      const d = await daemonOrOffline<DatasetJson>(config, {
        online: async client => client.request('data.add', { ...params }),
        offline: async dataDir => withLocalChain(dataDir, async (store, identity) => addDatasetFromFile({ store, signer: identity.signer, ...params }))
      })
      if (argv.json === true) {
        printJson(ctx, d)
        return
      }
      const size = d.format === 'ids' ? `${d.sequences} sequences, ${d.tokens} tokens` : `${formatBytes(d.bytes)} of text${d.tokens != null ? `, ${d.tokens} tokens` : ''}`
      ctx.stderr(`added dataset ${d.name} (${d.format}): ${size}; windows ${windowsText(d)}\n`)
      ctx.stdout(`${d.id}\n`)
    }
  }
}

function listCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'list',
    describe: 'the datasets on chain A',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const result = await daemonOrOffline<DataListResult>(config, {
        online: async client => client.request('data.list'),
        offline: async dataDir => withOfflineStore(dataDir, async store => ({ datasets: await listDatasets(store) }))
      })
      if (argv.json === true) {
        printJson(ctx, result)
        return
      }
      const lines = result.datasets.map(d => {
        const size = d.format === 'ids' ? `${d.sequences} seqs ${d.tokens} tokens` : formatBytes(d.bytes)
        const windows = d.trainWindows != null ? `  ${d.trainWindows}/${d.evalWindows} train/eval windows` : ''
        let state = d.stored ? '' : '  (payload not stored)'
        if (d.error != null) {
          state = `  (${d.error})`
        }
        return `${d.id}  ${d.name}  ${d.format}  ${size}${windows}${state}`
      })
      ctx.stdout(lines.length === 0 ? '' : lines.join('\n') + '\n')
    }
  }
}

function showCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'show <dataset>',
    describe: 'one dataset: its fields and train/eval windows (text: with --model\'s tokenizer)',
    builder: (y: Argv<any>) => y
      .positional('dataset', { type: 'string', describe: 'dataset name, or its id (hex or a unique prefix of >= 8)' })
      .option('model', { type: 'string', requiresArg: true, describe: 'model id whose tokenizer cuts a text dataset into windows' })
      .options(json),
    handler: async (argv: any) => {
      const dataset = String(argv.dataset)
      const model = argv.model !== undefined ? modelArg(argv.model) : undefined
      const config = await clientConfig(ctx, argv)
      const d = await daemonOrOffline<DatasetJson>(config, {
        online: async client => client.request('data.show', { dataset, ...(model != null ? { model } : {}) }),
        offline: async dataDir => withOfflineStore(dataDir, async store => showDataset(store, dataset, model))
      })
      if (argv.json === true) {
        printJson(ctx, d)
        return
      }
      printTable(ctx, [
        ['id', d.id],
        ['name', d.name],
        ['format', d.format],
        ['bytes', `${d.bytes} (${formatBytes(d.bytes)})${d.stored ? '' : ', payload not stored locally'}`],
        ['sequences', String(d.sequences)],
        ['tokens', d.tokens == null ? '-' : String(d.tokens)],
        ['model', d.model ?? '-'],
        ['windows', windowsText(d)],
        ['author', d.author],
        ['time', new Date(d.timestamp).toISOString()]
      ])
    }
  }
}

export function dataCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'data',
    describe: 'datasets on chain A (corpora for training and evaluation)',
    builder: (y: Argv<any>) => y
      .command(addCommand(ctx))
      .command(listCommand(ctx))
      .command(showCommand(ctx))
      .demandCommand(1, 'name a data command: add, list or show'),
    handler: () => {}
  }
}
