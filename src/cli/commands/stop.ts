/** `blyd stop`: ask the running daemon to stop and wait until its process is gone. */
import { setTimeout as sleep } from 'node:timers/promises'
import { STOP_WAIT_MS } from '../../daemon/constants.ts'
import { IpcError } from '../../daemon/errors.ts'
import { isProcessAlive, readLockPid } from '../../daemon/lock.ts'
import { clientConfig, printJson } from '../context.ts'
import { connectOrFail } from '../daemon-or-offline.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

export function stopCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'stop',
    describe: 'stop the running daemon',
    builder: (y: Argv<any>) => y.option('json', { type: 'boolean', describe: 'print one JSON object' }),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const client = await connectOrFail(config)
      let pid: number
      try {
        pid = (await client.request('shutdown')).pid
      } finally {
        client.close()
      }
      const deadline = Date.now() + STOP_WAIT_MS
      // stopped once the lock is released (clean stop) or the process is gone
      while (isProcessAlive(pid) && (await readLockPid(config.dataDir).catch(() => undefined)) === pid) {
        if (Date.now() > deadline) {
          throw new IpcError(`the daemon (pid ${pid}) did not stop within ${STOP_WAIT_MS / 1000} s`)
        }
        await sleep(50)
      }
      if (argv.json === true) {
        printJson(ctx, { stopped: true, pid })
      } else {
        ctx.stdout(`stopped blyd (pid ${pid})\n`)
      }
    }
  }
}
