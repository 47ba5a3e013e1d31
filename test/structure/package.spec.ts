import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'

describe('package.json', () => {
  it('every exports entry names a file that loads, and the package imports itself by name', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'))
    const entries = Object.entries(pkg.exports as Record<string, string>)
    expect(entries).to.not.be.empty()
    for (const [, target] of entries) {
      const mod = await import(new URL(`../../${target}`, import.meta.url).href)
      expect(Object.keys(mod)).to.not.be.empty()
    }
    const self = await import('blyd')
    expect(self.createDaemon).to.be.a('function')
    expect(self.IpcClient).to.be.a('function')
  })

  it('declares no dependency that nothing imports', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'))
    const root = new URL('../..', import.meta.url).pathname
    const sources: string[] = []
    for (const dir of ['src', 'bin', 'scripts']) {
      for (const f of await readdir(join(root, dir), { recursive: true })) {
        if (/\.(ts|js)$/.test(f)) {
          sources.push(await readFile(join(root, dir, f), 'utf8'))
        }
      }
    }
    const all = sources.join('\n')
    for (const dep of Object.keys(pkg.dependencies as Record<string, string>)) {
      const escaped = dep.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
      const used = new RegExp(`(from|import\\(|require\\.resolve\\() *'${escaped}(/[^']*)?'`).test(all)
      expect(used, `${dep} is declared in package.json but never imported`).to.equal(true)
    }
  })
})
