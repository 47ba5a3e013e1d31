import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { adviseWasmHugePages, loadHugePagesHelper, readThpMode } from '../../src/model/huge-pages.ts'

/** The /proc/self/smaps entry of the mapping that holds `address`. */
function mappingOf (address: bigint): Record<string, string> | undefined {
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const [range] = block.split(' ')
    const [from, to] = range.split('-').map(h => BigInt(`0x${h}`))
    if (from <= address && address < to) {
      return Object.fromEntries(block.split('\n').slice(1).map(l => l.split(/:\s+/)).filter(kv => kv.length === 2))
    }
  }
  return undefined
}

describe('huge pages for the wasm memory', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bly-thp-'))
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('reads the kernel THP mode from its sysfs format', async () => {
    const cases: Array<[string, string]> = [
      ['always [madvise] never\n', 'madvise'],
      ['[always] madvise never\n', 'always'],
      ['always madvise [never]\n', 'never'],
      ['no brackets here\n', 'unknown']
    ]
    for (const [text, mode] of cases) {
      const file = join(dir, 'enabled')
      await writeFile(file, text)
      expect(readThpMode(file)).to.equal(mode)
    }
    expect(readThpMode(join(dir, 'missing'))).to.equal('unknown')
  })

  it('says why when the native helper is missing, and does not throw', () => {
    const missing = join(dir, 'nope.node')
    expect(loadHugePagesHelper(missing).reason).to.match(/not built/)
    const status = adviseWasmHugePages(new WebAssembly.Memory({ initial: 1 }).buffer, { thp: 'madvise', helperPath: missing })
    expect(status).to.include({ thp: 'madvise', helper: false, advisedBytes: 0, active: false })
    expect(status.reason).to.match(/not built/)
    // THP always needs no advice
    expect(adviseWasmHugePages(undefined, { thp: 'always', helperPath: missing })).to.include({ active: true, helper: false })
    expect(adviseWasmHugePages(undefined, { thp: 'never' })).to.include({ active: false })
    // turned off: no advice, whatever the helper
    expect(adviseWasmHugePages(new WebAssembly.Memory({ initial: 1 }).buffer, { thp: 'madvise', off: true })).to.deep.equal({ thp: 'madvise', helper: false, advisedBytes: 0, active: false, reason: 'huge pages turned off' })
  })

  it('marks a wasm memory and what it grows into as huge-page eligible', function () {
    const { helper, reason } = loadHugePagesHelper()
    const thp = readThpMode()
    if (helper == null || (thp !== 'madvise' && thp !== 'always')) {
      // no compiler at install, or a kernel without THP: nothing to show here
      this.skip()
      return
    }
    expect(reason).to.equal(undefined)
    expect(() => helper.adviseHugePages(42 as unknown as ArrayBuffer, 0)).to.throw(TypeError, /ArrayBuffer/)
    const memory = new WebAssembly.Memory({ initial: 64, maximum: 65536 })
    const r = helper.adviseHugePages(memory.buffer, 4 * 1024 ** 3)
    expect(r.adviseErrno).to.equal(0)
    expect(r.advisedBytes).to.be.greaterThan(0)
    memory.grow(512)
    new Uint8Array(memory.buffer).fill(1)
    const base = BigInt(r.base)
    const grown = mappingOf(base + BigInt(64 * 65536 + 256 * 65536))
    expect(grown?.THPeligible).to.equal('1')
    expect(mappingOf(base)?.THPeligible).to.equal('1')
  })

  it('reports the wasm backend\'s huge pages in its selection', async () => {
    const sel = await selectBackend('wasm')
    expect(sel.hugePages?.thp).to.equal(readThpMode())
    const h = sel.hugePages
    if (h == null) {
      throw new Error('no hugePages status')
    }
    expect(h.active).to.equal(h.thp === 'always' || (h.thp === 'madvise' && h.advisedBytes > 0))
    if (!h.active) {
      expect(h.reason).to.be.a('string')
    }
    if (loadHugePagesHelper().helper != null && h.thp === 'madvise') {
      expect(h.active).to.equal(true)
    }
  })
})
