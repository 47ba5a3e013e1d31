/**
 * The `blyd` command line. `main(argv)` parses, runs one command and returns
 * the exit code; every failure is one line on stderr (stack only with
 * BLYD_DEBUG=1).
 */
import yargs from 'yargs'
import { DaemonErrorCode, UsageError } from '../daemon/errors.ts'
import { blydVersion } from '../daemon/version.ts'
import { BlydError } from '../protocols/errors.ts'
import { chainCommand } from './commands/chain.ts'
import { chatCommand } from './commands/chat.ts'
import { dataCommand } from './commands/data.ts'
import { generateCommand } from './commands/generate.ts'
import { idCommand } from './commands/id.ts'
import { deltaCommand, proposalCommand, proposalsCommand, validatorsCommand } from './commands/learning.ts'
import { modelCommand } from './commands/model.ts'
import { peersCommand } from './commands/peers.ts'
import { planCommand } from './commands/plan.ts'
import { rewardsCommand } from './commands/rewards.ts'
import { startCommand } from './commands/start.ts'
import { statusCommand } from './commands/status.ts'
import { stopCommand } from './commands/stop.ts'
import { trainCommand } from './commands/train.ts'
import type { CliContext } from './context.ts'

export const ExitCode = {
  Ok: 0,
  Error: 1,
  Usage: 2,
  NotRunning: 3
} as const

export interface MainOptions {
  env?: Record<string, string | undefined>
  stdout?(text: string): void
  stderr?(text: string): void
}

function oneLine (text: string): string {
  return text.split('\n').map(s => s.trim()).filter(s => s !== '').join('; ')
}

export async function main (argv: string[], options: MainOptions = {}): Promise<number> {
  const ctx: CliContext = {
    exitCode: ExitCode.Ok,
    env: options.env ?? process.env,
    stdout: options.stdout ?? (text => { process.stdout.write(text) }),
    stderr: options.stderr ?? (text => { process.stderr.write(text) })
  }
  const debug = ctx.env.BLYD_DEBUG === '1'

  const parser = yargs(argv)
    .scriptName('blyd')
    .usage('$0 <command> [options]')
    .option('data-dir', { type: 'string', global: true, requiresArg: true, describe: 'data directory (env BLYD_DATA_DIR, default ~/.blyd)' })
    .option('ipc-socket', { type: 'string', global: true, requiresArg: true, describe: 'IPC socket path (env BLYD_IPC_SOCKET, default DATA_DIR/blyd.sock)' })
    .command(startCommand(ctx))
    .command(stopCommand(ctx))
    .command(statusCommand(ctx))
    .command(idCommand(ctx))
    .command(chainCommand(ctx))
    .command(modelCommand(ctx))
    .command(dataCommand(ctx))
    .command(generateCommand(ctx))
    .command(chatCommand(ctx))
    .command(peersCommand(ctx))
    .command(planCommand(ctx))
    .command(deltaCommand(ctx))
    .command(proposalsCommand(ctx))
    .command(proposalCommand(ctx))
    .command(validatorsCommand(ctx))
    .command(rewardsCommand(ctx))
    .command(trainCommand(ctx))
    .demandCommand(1, 'name a command: start, stop, status, id, chain, model, data, generate, chat, peers, plan, delta, proposals, proposal, validators, rewards or train (see blyd --help)')
    .recommendCommands()
    .strict()
    .version(blydVersion())
    .help()
    .alias('help', 'h')
    .wrap(null)
    .exitProcess(false)
    .fail((message: string | null, err: Error | undefined) => {
      throw err ?? new UsageError(message ?? 'invalid command line')
    })

  try {
    await parser.parseAsync()
    return ctx.exitCode
  } catch (err: any) {
    if (err instanceof BlydError) {
      ctx.stderr(`blyd: ${oneLine(err.message)}\n`)
      if (debug && err.stack != null) {
        ctx.stderr(err.stack + '\n')
      }
      if (err.code === DaemonErrorCode.USAGE) {
        return ExitCode.Usage
      }
      return err.code === DaemonErrorCode.NOT_RUNNING ? ExitCode.NotRunning : ExitCode.Error
    }
    // yargs validation errors (unknown flags, missing args) arrive as YError
    if (err?.name === 'YError') {
      ctx.stderr(`blyd: ${oneLine(err.message)} (see blyd --help)\n`)
      return ExitCode.Usage
    }
    ctx.stderr(`blyd: ${oneLine(String(err?.message ?? err))}\n`)
    if (debug && err?.stack != null) {
      ctx.stderr(err.stack + '\n')
    }
    return ExitCode.Error
  }
}
