/**
 * One convention for every error-code table in src/ (`export const
 * XErrorCode = { ... } as const`): keys in SCREAMING_CASE; values either an
 * 'ERR_...' string (what BlydError.code carries, an interface) or an integer
 * (the codes of a wire protocol's error frames); no string value in two
 * tables or under two keys, so a code names one failure.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { expect } from 'aegir/chai'
import { sourceFiles } from './import-graph.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

interface CodeTable {
  file: string
  name: string
  codes: Record<string, unknown>
}

async function codeTables (): Promise<CodeTable[]> {
  const tables: CodeTable[] = []
  for (const file of await sourceFiles(root, 'src')) {
    const text = await readFile(`${root}/${file}`, 'utf8')
    const names = [...text.matchAll(/^export const (\w+ErrorCode) = \{/gm)].map(m => m[1])
    if (names.length === 0) {
      continue
    }
    const mod = await import(pathToFileURL(`${root}/${file}`).href)
    for (const name of names) {
      tables.push({ file, name, codes: mod[name] })
    }
  }
  return tables
}

describe('error-code tables in src/', function () {
  this.timeout(60_000)

  let tables: CodeTable[]

  before(async () => {
    tables = await codeTables()
  })

  it('are found in every part that raises errors', () => {
    const names = tables.map(t => t.name)
    for (const expected of ['ChainErrorCode', 'NetErrorCode', 'RecordErrorCode', 'PipelineErrorCode', 'ModelErrorCode', 'MeshErrorCode', 'DaemonErrorCode', 'DatasetErrorCode', 'InferErrorCode', 'RpcErrorCode', 'SyncErrorCode']) {
      expect(names).to.include(expected)
    }
  })

  it('key every code in SCREAMING_CASE', () => {
    const bad = tables.flatMap(t => Object.keys(t.codes).filter(k => !/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/.test(k)).map(k => `${t.file}: ${t.name}.${k}`))
    expect(bad, `keys not in SCREAMING_CASE:\n  ${bad.join('\n  ')}\n`).to.deep.equal([])
  })

  it('hold ERR_ strings or wire integers, and no string code twice', () => {
    const seen = new Map<string, string>()
    const bad: string[] = []
    for (const t of tables) {
      for (const [key, value] of Object.entries(t.codes)) {
        const where = `${t.name}.${key}`
        if (typeof value === 'number') {
          if (!Number.isInteger(value)) {
            bad.push(`${where} = ${value} is not an integer`)
          }
          continue
        }
        if (typeof value !== 'string' || !/^ERR_[A-Z0-9_]+$/.test(value)) {
          bad.push(`${where} = ${String(value)} is not an ERR_ code`)
          continue
        }
        const other = seen.get(value)
        if (other != null) {
          bad.push(`${value} is both ${other} and ${where}`)
        }
        seen.set(value, where)
      }
    }
    expect(bad, `bad codes:\n  ${bad.join('\n  ')}\n`).to.deep.equal([])
  })
})
