/** `blyd generate`: generate from a model on the chain, streaming tokens as they come. */
import { UsageError } from '../../daemon/errors.ts'
import { SESSION_PRIORITY_NAMES, isSessionPriorityName } from '../../pipeline/priority.ts'
import { clientConfig, printJson } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import { chosenModel, modelArg } from '../model-choice.ts'
import { withLocalInference } from '../model-local.ts'
import { parseIdList, refuseWorkersOnline, runOptions, versionArg, versionOption } from './model.ts'
import type { GenerateParams, GenerateResult, GenerateTokenJson } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

function numberOption (argv: any, key: string, flag: string, check: (n: number) => boolean, what: string): number | undefined {
  const v = argv[key]
  if (v === undefined) {
    return undefined
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) {
    throw new UsageError(`--${flag} must be ${what} (got ${String(v)})`)
  }
  return v
}

/** A generate request with the model as given (undefined: the only model on chain, see chosenModel). */
export type GenerateRequest = Omit<GenerateParams, 'model'> & { model: string | undefined }

/** The generate request the flags describe. */
export function generateParamsFromArgv (argv: any): GenerateRequest {
  const given = ['prompt', 'chat', 'promptIds'].filter(k => argv[k] !== undefined)
  if (given.length !== 1) {
    throw new UsageError('give exactly one of --prompt TEXT, --chat TEXT and --prompt-ids 1,2,3')
  }
  const params: GenerateRequest = { model: argv.model !== undefined ? modelArg(argv.model) : undefined }
  if (argv.prompt !== undefined) {
    params.prompt = String(argv.prompt)
  } else if (argv.chat !== undefined) {
    params.chat = String(argv.chat)
  } else {
    params.promptIds = parseIdList(argv.promptIds, '--prompt-ids')
  }
  const optional: Array<[keyof GenerateRequest, number | undefined]> = [
    ['maxNewTokens', numberOption(argv, 'maxNewTokens', 'max-new-tokens', n => Number.isSafeInteger(n) && n >= 0, 'an integer >= 0')],
    ['temperature', numberOption(argv, 'temperature', 'temperature', n => n >= 0, 'a number >= 0')],
    ['topK', numberOption(argv, 'topK', 'top-k', n => Number.isSafeInteger(n) && n >= 0, 'an integer >= 0')],
    ['topP', numberOption(argv, 'topP', 'top-p', n => n > 0 && n <= 1, 'a number in (0, 1]')],
    ['repetitionPenalty', numberOption(argv, 'repetitionPenalty', 'repetition-penalty', n => n > 0, 'a number > 0')],
    ['seed', numberOption(argv, 'seed', 'seed', n => Number.isSafeInteger(n), 'an integer')],
    ['speculate', numberOption(argv, 'speculate', 'speculate', n => Number.isSafeInteger(n) && n >= 1 && n <= 64, 'an integer in [1, 64]')]
  ]
  for (const [key, value] of optional) {
    if (value !== undefined) {
      (params as any)[key] = value
    }
  }
  if (argv.priority !== undefined) {
    if (!isSessionPriorityName(argv.priority)) {
      throw new UsageError(`--priority must be one of ${SESSION_PRIORITY_NAMES.join(', ')} (got ${String(argv.priority)})`)
    }
    params.priority = argv.priority
  }
  if (argv.draft !== undefined) {
    const draft = String(argv.draft)
    if (!/^[0-9a-fA-F]{8,64}$/.test(draft)) {
      throw new UsageError(`--draft must be a model id: 64 hex characters or a unique prefix of at least 8 (got ${JSON.stringify(draft)})`)
    }
    params.draft = draft.toLowerCase()
  } else if (params.speculate !== undefined) {
    throw new UsageError('--speculate needs --draft MODEL')
  }
  if (argv.stop !== undefined) {
    params.stop = (Array.isArray(argv.stop) ? argv.stop : [argv.stop]).map(String)
  }
  const version = versionArg(argv.version)
  if (version != null) {
    params.version = version
  }
  return params
}

export function generateCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'generate',
    describe: 'generate text (or token ids) from a model on the chain; tokens stream to stdout as they come',
    builder: (y: Argv<any>) => y
      .option('model', { type: 'string', requiresArg: true, describe: 'model id (hex, or a unique prefix of >= 8); may be omitted when exactly one model is on chain' })
      .option('prompt', { type: 'string', requiresArg: true, describe: 'prompt text (encoded as is)' })
      .option('chat', { type: 'string', requiresArg: true, describe: 'a user message, rendered with the model\'s chat template' })
      .option('prompt-ids', { type: 'string', requiresArg: true, describe: 'prompt as token ids, comma-separated' })
      .option('max-new-tokens', { type: 'number', requiresArg: true, describe: 'most tokens to generate (default 256)' })
      .option('temperature', { type: 'number', requiresArg: true, describe: '0 = greedy (default 0)' })
      .option('top-k', { type: 'number', requiresArg: true, describe: 'sample from the k most likely tokens (0 = off)' })
      .option('top-p', { type: 'number', requiresArg: true, describe: 'nucleus sampling threshold (1 = off)' })
      .option('repetition-penalty', { type: 'number', requiresArg: true, describe: 'penalty on tokens already seen (1 = off)' })
      .option('seed', { type: 'number', requiresArg: true, describe: 'sampling seed' })
      .option('priority', { type: 'string', requiresArg: true, describe: `queue priority at the mesh's stages: ${SESSION_PRIORITY_NAMES.join(', ')} (default interactive)` })
      .option('draft', { type: 'string', requiresArg: true, describe: 'speculative decoding: a model on the chain with the same vocabulary drafts tokens (run whole here) for the target to check' })
      .option('speculate', { type: 'number', requiresArg: true, describe: 'draft tokens per round to start with (adapts; default 4; needs --draft)' })
      .option('stop', { type: 'string', array: true, requiresArg: true, describe: 'stop when the text contains this (repeatable)' })
      .version(false)
      .options(versionOption)
      .options(runOptions)
      .option('json', { type: 'boolean', describe: 'print one JSON object at the end instead of streaming' }),
    handler: async (argv: any) => {
      const params = generateParamsFromArgv(argv)
      const config = await clientConfig(ctx, argv, { backend: argv.backend, workers: argv.workers })
      const stream = argv.json !== true
      let streamed = ''
      const onToken = (t: GenerateTokenJson): void => {
        if (!stream) {
          return
        }
        const piece = t.text ?? `${t.token} `
        streamed += piece
        ctx.stdout(piece)
      }
      const local = async (dataDir: string): Promise<GenerateResult> => withLocalInference(dataDir, config.backend, async service => {
        const model = await chosenModel(params.model, async () => service.list())
        return service.generate({ ...params, model }, onToken)
      }, config.workers)
      const result = argv.local === true
        ? await local(config.dataDir)
        : await daemonOrOffline<GenerateResult>(config, {
          online: async client => {
            refuseWorkersOnline(argv)
            const model = await chosenModel(params.model, async () => (await client.request('model.list')).models)
            return client.request('generate', { ...params, model, ...(typeof argv.backend === 'string' ? { backend: argv.backend } : {}) }, {
              onStream: p => { onToken({ token: Number(p.token), text: typeof p.text === 'string' ? p.text : null }) }
            })
          },
          offline: local
        })
      if (!stream) {
        printJson(ctx, result)
        return
      }
      // text held back while it could still have begun a stop string
      if (result.text.startsWith(streamed) && result.text.length > streamed.length) {
        ctx.stdout(result.text.slice(streamed.length))
      }
      ctx.stdout('\n')
    }
  }
}
