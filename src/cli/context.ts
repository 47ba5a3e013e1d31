/**
 * What every command handler gets: output writers, the environment, and a
 * place to leave its exit code (no module-level state).
 */
import { loadConfig } from '../daemon/config.ts'
import type { BlydConfig, ConfigKey } from '../daemon/config.ts'

export interface CliContext {
  exitCode: number
  env: Record<string, string | undefined>
  stdout(text: string): void
  stderr(text: string): void
}

export interface CommonArgs {
  dataDir?: string
  ipcSocket?: string
  json?: boolean
}

/** Config for commands that only need the data dir and the socket. */
export async function clientConfig (ctx: CliContext, argv: CommonArgs, flags: Partial<Record<ConfigKey, unknown>> = {}): Promise<BlydConfig> {
  return loadConfig({ dataDir: argv.dataDir, env: ctx.env, flags: { ipcSocket: argv.ipcSocket, ...flags } })
}

export function printJson (ctx: CliContext, value: unknown): void {
  ctx.stdout(JSON.stringify(value) + '\n')
}

/** `label  value` lines with aligned values */
export function printTable (ctx: CliContext, rows: Array<[string, string]>): void {
  const width = Math.max(...rows.map(([k]) => k.length))
  ctx.stdout(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n')
}
