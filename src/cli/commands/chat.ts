/**
 * `blyd chat`: an interactive multi-turn chat on a terminal. Each turn sends
 * the whole conversation (ChatHistory) as a `generate` chat, rendered by the
 * model's chat template where generation runs (the daemon, or this process
 * with --local, as `generate --chat` does), and streams the reply's tokens
 * as they come; the turn ends at the model's end-of-turn token. After each
 * reply one line on stderr gives its figures (tokens, prompt tokens, speed).
 * /reset clears the history; /exit, Ctrl-D or Ctrl-C end the session (Ctrl-C
 * during a reply ends it after that reply).
 */
import { createInterface } from 'node:readline'
import { ChatHistory, parseChatLine } from '../chat-session.ts'
import { clientConfig } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import { chosenModelSummary, randomWeightsNote } from '../model-choice.ts'
import { withLocalInference } from '../model-local.ts'
import { samplingOptions, samplingParamsFromArgv, thinkingOption } from './generate.ts'
import { refuseWorkersOnline, runOptions, versionOption } from './model.ts'
import type { GenerateRequest } from './generate.ts'
import type { ChatMessage } from '../../model/tokenizer.ts'
import type { ModelSummaryJson, GenerateResult } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

/** One turn: the conversation so far (ending with the user's message) to a reply, streaming its text. */
export type ChatTurn = (messages: ChatMessage[], onText: (text: string) => void) => Promise<GenerateResult>

export const CHAT_PROMPT = '> '

function turnFigures (r: GenerateResult): string {
  const end = r.finishReason === 'length' ? ', stopped at --max-new-tokens' : ''
  return `[${r.tokens.length} tokens, prompt ${r.promptTokens} tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s${end}]\n`
}

/** The read-reply loop on this process's terminal (or piped stdin); resolves when the session ends. */
async function converse (ctx: CliContext, model: ModelSummaryJson | undefined, modelId: string, turn: ChatTurn): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true && process.stdout.isTTY === true, prompt: CHAT_PROMPT })
  let closed = false
  let interrupted = false
  rl.on('close', () => { closed = true })
  rl.on('SIGINT', () => {
    interrupted = true
    rl.close()
  })
  const history = new ChatHistory()
  ctx.stderr(randomWeightsNote(model) ?? '')
  ctx.stderr(`chat with model ${modelId.slice(0, 12)}${model != null && model.name !== '' ? ` (${model.name})` : ''}: type a message and Enter; /reset clears the history, /exit or Ctrl-D ends\n`)
  rl.prompt()
  for await (const line of rl) {
    const input = parseChatLine(line)
    if (input.kind === 'exit') {
      rl.close()
      return
    }
    if (input.kind === 'reset') {
      history.reset()
      ctx.stderr('[history cleared]\n')
    } else if (input.kind === 'unknown') {
      ctx.stderr(`unknown command ${input.command}: /reset clears the history, /exit ends (start a message with // to send a leading /)\n`)
    } else if (input.kind === 'turn') {
      let streamed = ''
      const result = await turn(history.ask(input.text), text => {
        streamed += text
        ctx.stdout(text)
      })
      // text held back while it could still have begun a stop string
      if (result.text.startsWith(streamed) && result.text.length > streamed.length) {
        ctx.stdout(result.text.slice(streamed.length))
      }
      ctx.stdout('\n')
      ctx.stderr(turnFigures(result))
      history.record(input.text, result.text)
    }
    if (interrupted) {
      break
    }
    if (!closed) {
      rl.prompt()
    }
  }
  // Ctrl-D (end of input; lines piped in before it are all answered) or Ctrl-C: end the prompt's line
  ctx.stdout('\n')
}

export function chatCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'chat',
    describe: 'an interactive multi-turn chat with a model on the chain, on this terminal: the model\'s chat template, replies streamed; /reset clears the history, /exit or Ctrl-D ends',
    builder: (y: Argv<any>) => y
      .options(samplingOptions)
      .options(thinkingOption)
      .version(false)
      .options(versionOption)
      .options(runOptions),
    handler: async (argv: any) => {
      const base: GenerateRequest = samplingParamsFromArgv(argv)
      const request = (messages: ChatMessage[], model: string): GenerateRequest & { model: string } => ({
        ...base,
        model,
        chat: messages.map(m => ({ role: m.role, content: m.content })),
        ...(argv.thinking !== undefined ? { enableThinking: argv.thinking === true } : {})
      })
      const config = await clientConfig(ctx, argv, { backend: argv.backend, workers: argv.workers })
      const local = async (dataDir: string): Promise<void> => withLocalInference(dataDir, config.backend, async service => {
        const { id, summary } = await chosenModelSummary(base.model, async () => service.list())
        await converse(ctx, summary, id, async (messages, onText) => service.generate(request(messages, id), t => { onText(t.text ?? '') }))
      }, config.workers)
      if (argv.local === true) {
        await local(config.dataDir)
        return
      }
      await daemonOrOffline<void>(config, {
        online: async client => {
          refuseWorkersOnline(argv)
          const { id, summary } = await chosenModelSummary(base.model, async () => (await client.request('model.list')).models)
          const backend = typeof argv.backend === 'string' ? { backend: argv.backend } : {}
          await converse(ctx, summary, id, async (messages, onText) => client.request('generate', { ...request(messages, id), ...backend }, {
            onStream: p => { onText(typeof p.text === 'string' ? p.text : '') }
          }))
        },
        offline: local
      })
    }
  }
}
