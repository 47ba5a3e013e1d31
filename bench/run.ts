/**
 * Bench runner: `npm run bench -- <name> [args...]` runs bench/<name>.ts on
 * this Node with the remaining arguments.
 */
import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const [name, ...args] = process.argv.slice(2)
const available = readdirSync(here).filter(f => f.endsWith('.ts') && f !== 'run.ts').map(f => f.slice(0, -3))

if (name == null || !/^[a-z0-9-]+$/.test(name) || !existsSync(join(here, `${name}.ts`))) {
  process.stderr.write(`usage: npm run bench -- <name> [args]\navailable: ${available.join(', ')}\n`)
  process.exit(2)
}

const child = spawn(process.execPath, [join(here, `${name}.ts`), ...args], { stdio: 'inherit' })
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal != null ? 1 : 0))
})
