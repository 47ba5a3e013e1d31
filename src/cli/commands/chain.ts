/** `blyd chain info|get|tips|verify|put`: the local chain store, via the daemon or offline. */
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { finished } from 'node:stream/promises'
import { PUT_TYPES } from '../../daemon/chain-put.ts'
import { chainGet, chainInfo, chainPayload, chainTips, chainVerify } from '../../daemon/chain-queries.ts'
import { DEFAULT_PUT_TYPE } from '../../daemon/constants.ts'
import { UsageError } from '../../daemon/errors.ts'
import { clientConfig, printJson, printTable } from '../context.ts'
import { connectOrFail, daemonOrOffline, withOfflineStore } from '../daemon-or-offline.ts'
import { formatBytes } from '../format.ts'
import type { VerifyReport } from '../../chain/types.ts'
import type { BlockJson, ChainInfoJson, ChainTipsJson, PutResult } from '../../protocols/ipc.ts'
import type { CliContext } from '../context.ts'
import type { WriteStream } from 'node:fs'
import type { Argv, CommandModule } from 'yargs'

const json = { json: { type: 'boolean', describe: 'print one JSON object' } } as const

interface PayloadOut {
  file: string
  size: number
  sha256: string
}

/** write bytes to a stream, waiting for drain */
async function writeAll (out: WriteStream, bytes: Uint8Array): Promise<void> {
  if (!out.write(bytes)) {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { out.off('drain', onDrain); reject(err) }
      const onDrain = (): void => { out.off('error', onError); resolve() }
      out.once('drain', onDrain)
      out.once('error', onError)
    })
  }
}

async function savePayload (ctx: CliContext, argv: any, idHex: string, file: string): Promise<PayloadOut> {
  const config = await clientConfig(ctx, argv)
  const out = createWriteStream(file, { flags: 'w' })
  const outDone = finished(out)
  const hash = createHash('sha256')
  let size = 0
  const take = async (bytes: Uint8Array): Promise<void> => {
    hash.update(bytes)
    size += bytes.byteLength
    await writeAll(out, bytes)
  }
  try {
    await daemonOrOffline<void>(config, {
      online: async client => {
        const result = await client.request('chain.payload', { id: idHex }, {
          onStream: async params => take(Buffer.from(String(params.data), 'base64'))
        })
        if (result.sha256 !== hash.copy().digest('hex')) {
          throw new UsageError(`payload of ${idHex} arrived corrupted (sha-256 mismatch)`)
        }
      },
      offline: async dataDir => withOfflineStore(dataDir, async store => {
        for await (const chunk of chainPayload(store, idHex)) {
          await take(chunk)
        }
      })
    })
  } catch (err) {
    out.destroy()
    await outDone.catch(() => {})
    await unlink(file).catch(() => {})
    throw err
  }
  out.end()
  await outDone
  return { file, size, sha256: hash.digest('hex') }
}

function infoCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'info',
    describe: 'block counts and tips of both chains',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const info = await daemonOrOffline<ChainInfoJson>(config, {
        online: async client => client.request('chain.info'),
        offline: async dataDir => withOfflineStore(dataDir, chainInfo)
      })
      if (argv.json === true) {
        printJson(ctx, info)
        return
      }
      printTable(ctx, [
        ['chain A', `${info.counts.A} blocks`],
        ['chain B', `${info.counts.B} blocks`],
        ['orphans', String(info.counts.orphans)],
        ...info.tips.A.map((id): [string, string] => ['tip A', id]),
        ...info.tips.B.map((id): [string, string] => ['tip B', id])
      ])
    }
  }
}

function tipsCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'tips',
    describe: 'the tips (blocks without children) of both chains',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const tips = await daemonOrOffline<ChainTipsJson>(config, {
        online: async client => client.request('chain.tips'),
        offline: async dataDir => withOfflineStore(dataDir, chainTips)
      })
      if (argv.json === true) {
        printJson(ctx, tips)
        return
      }
      const lines = [...tips.A.map(id => `A ${id}`), ...tips.B.map(id => `B ${id}`)]
      ctx.stdout(lines.length === 0 ? '' : lines.join('\n') + '\n')
    }
  }
}

function getCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'get <id>',
    describe: 'show one block (id: 64 hex characters)',
    builder: (y: Argv<any>) => y
      .positional('id', { type: 'string', describe: 'block id, hex' })
      .option('payload-out', { type: 'string', requiresArg: true, describe: 'also write the block\'s payload (chunk hashes verified) to this file' })
      .options(json),
    handler: async (argv: any) => {
      const idHex = String(argv.id)
      if (!/^[0-9a-fA-F]{64}$/.test(idHex)) {
        throw new UsageError(`block id must be 64 hex characters (got "${idHex}")`)
      }
      const id = idHex.toLowerCase()
      const config = await clientConfig(ctx, argv)
      const block = await daemonOrOffline<BlockJson>(config, {
        online: async client => client.request('chain.get', { id }),
        offline: async dataDir => withOfflineStore(dataDir, async store => chainGet(store, id))
      })
      let payload: PayloadOut | undefined
      if (typeof argv.payloadOut === 'string') {
        payload = await savePayload(ctx, argv, id, resolve(argv.payloadOut))
      }
      if (argv.json === true) {
        printJson(ctx, payload != null ? { ...block, payloadOut: payload } : block)
        return
      }
      const rows: Array<[string, string]> = [
        ['id', block.id],
        ['chain', block.chain],
        ['type', block.type],
        ['author', block.author],
        ['timestamp', `${new Date(Number(block.timestamp)).toISOString()} (${block.timestamp})`],
        ['parents', block.parents.join(' ') || '-'],
        ['payload', `${formatBytes(Number(block.payloadSize))} in ${block.chunks} chunks${block.payloadComplete ? '' : ' (incomplete locally)'}`],
        ...Object.entries(block.fields).map(([k, v]): [string, string] => [`field ${k}`, `${v.value} (${v.kind})`])
      ]
      if (payload != null) {
        rows.push(['payload out', `${payload.file} (${payload.size} bytes, sha-256 ${payload.sha256})`])
      }
      printTable(ctx, rows)
    }
  }
}

function verifyCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'verify',
    describe: 're-check every header, signature and payload chunk (exit 1 on any issue)',
    builder: (y: Argv<any>) => y.options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const report = await daemonOrOffline<VerifyReport>(config, {
        online: async client => client.request('chain.verify'),
        offline: async dataDir => withOfflineStore(dataDir, async store => chainVerify(store))
      })
      ctx.exitCode = report.ok ? 0 : 1
      if (argv.json === true) {
        printJson(ctx, report)
        return
      }
      const summary = `${report.blocks} blocks, ${report.chunks} chunks, ${formatBytes(report.bytes)}`
      const lines = [report.ok ? `ok: ${summary} verified` : `FAILED: ${report.issues.length} issues in ${summary}`]
      for (const issue of report.issues) {
        lines.push(`${issue.code} ${issue.id ?? '-'} ${issue.message}`)
      }
      ctx.stdout(lines.join('\n') + '\n')
    }
  }
}

function putCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'put',
    describe: 'author a block on chain A from a file (read by the daemon), parents = current tips',
    builder: (y: Argv<any>) => y
      .option('payload', { type: 'string', demandOption: true, requiresArg: true, describe: 'file to store as the payload' })
      .option('type', { type: 'string', choices: Object.keys(PUT_TYPES), default: DEFAULT_PUT_TYPE, describe: 'block type' })
      .options(json),
    handler: async (argv: any) => {
      const config = await clientConfig(ctx, argv)
      const client = await connectOrFail(config)
      let result: PutResult
      try {
        result = await client.request('chain.put', { payload: resolve(String(argv.payload)), type: argv.type })
      } finally {
        client.close()
      }
      if (argv.json === true) {
        printJson(ctx, result)
      } else {
        ctx.stdout(`${result.id}\n`)
      }
    }
  }
}

export function chainCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'chain',
    describe: 'inspect and write the local chain store',
    builder: (y: Argv<any>) => y
      .command(infoCommand(ctx))
      .command(getCommand(ctx))
      .command(tipsCommand(ctx))
      .command(verifyCommand(ctx))
      .command(putCommand(ctx))
      .demandCommand(1, 'name a chain command: info, get, tips, verify or put'),
    handler: () => {}
  }
}
