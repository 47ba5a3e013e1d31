/** `blyd start`: run the daemon in the foreground until SIGINT/SIGTERM or `blyd stop`. */
import { CONFIG_KEYS, CONFIG_SPEC, loadConfig } from '../../daemon/config.ts'
import { UsageError } from '../../daemon/errors.ts'
import { createLogger } from '../../daemon/logger.ts'
import type { ConfigKey } from '../../daemon/config.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

function camel (flag: string): string {
  return flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())
}

export function startCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'start',
    describe: 'run the daemon in the foreground (logs go to stderr)',
    builder: (y: Argv<any>) => {
      let out: Argv<any> = y.option('foreground', {
        type: 'boolean',
        default: true,
        describe: 'stay in the foreground (the only mode; use a service manager to background it)'
      })
      for (const key of CONFIG_KEYS) {
        const spec = CONFIG_SPEC[key]
        if (key === 'ipcSocket') {
          continue // a global option
        }
        out = spec.kind === 'boolean'
          ? out.option(spec.flag, { type: 'boolean', describe: spec.describe })
          : out.option(spec.flag, { type: spec.kind === 'list' ? 'array' : 'string', describe: spec.describe, requiresArg: true })
      }
      return out
    },
    handler: async (argv: any) => {
      if (argv.foreground === false) {
        throw new UsageError('--no-foreground is not supported: blyd start always runs in the foreground (run it under a service manager to background it)')
      }
      const flags: Partial<Record<ConfigKey, unknown>> = {}
      for (const key of CONFIG_KEYS) {
        flags[key] = argv[camel(CONFIG_SPEC[key].flag)]
      }
      const config = await loadConfig({ dataDir: argv.dataDir, env: ctx.env, flags })
      const logger = createLogger({ level: config.logLevel, write: line => { ctx.stderr(line) } })
      const log = logger.forComponent('bly:cli:start')
      // the daemon (libp2p, tfjs, LevelDB) is loaded here so that other commands start without it
      const { createDaemon } = await import('../../daemon/daemon.ts')
      const daemon = createDaemon({ config, logger })
      const onSignal = (signal: NodeJS.Signals): void => {
        log.info('signal', { signal })
        daemon.stop(`received ${signal}`).catch(err => { log.error('daemon.stop.failed', { error: err.message }) })
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      try {
        await daemon.start()
        await daemon.stopped
      } finally {
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
      }
      ctx.exitCode = 0
    }
  }
}
