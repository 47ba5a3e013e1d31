/** `blyd id`: the node's PeerId and public key (from the daemon, or the key file when none runs). */
import { toHex } from '../../daemon/block-json.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import type { IdResult } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

export function idCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'id',
    describe: 'show this node\'s PeerId and public key',
    builder: (y: Argv<any>) => y.option('json', { type: 'boolean', describe: 'print one JSON object' }),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const id = await daemonOrOffline<IdResult>(config, {
        online: async client => client.request('id'),
        offline: async dataDir => {
          const { loadIdentity } = await import('../../daemon/identity.ts')
          const identity = await loadIdentity(dataDir)
          return { peerId: identity.peerId.toString(), publicKey: toHex(identity.publicKey) }
        }
      })
      if (argv.json === true) {
        printJson(ctx, id)
      } else {
        printTable(ctx, [['peer id', id.peerId], ['public key', id.publicKey]])
      }
    }
  }
}
