import { readFileSync } from 'node:fs'

/** blyd's version, from package.json. */
export function blydVersion (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  return String(pkg.version)
}
