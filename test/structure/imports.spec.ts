/**
 * The import structure of src/: no cycle between files, protocols/ imports
 * no other part, and every import between parts is one the layering table
 * of docs/architecture.md allows. The table is the only statement of the
 * layering: this test reads it, so the doc and the code cannot drift.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { importCycles, moduleSpecifiers, parseLayering, partOf, resolveSpecifier, sourceFiles } from './import-graph.ts'
import type { LayeringRow } from './import-graph.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

interface Edge {
  from: string
  to: string
}

interface SrcGraph {
  files: string[]
  edges: Edge[]
  /** relative specifiers that name no file, as "file: specifier" */
  unresolved: string[]
}

async function readSrcGraph (): Promise<SrcGraph> {
  const files = await sourceFiles(root, 'src')
  const edges: Edge[] = []
  const unresolved: string[] = []
  for (const from of files) {
    const text = await readFile(`${root}/${from}`, 'utf8')
    for (const specifier of moduleSpecifiers(from, text)) {
      if (!specifier.startsWith('.')) {
        continue
      }
      const to = await resolveSpecifier(root, from, specifier)
      if (to == null) {
        unresolved.push(`${from}: ${specifier}`)
      } else {
        edges.push({ from, to })
      }
    }
  }
  return { files, edges, unresolved }
}

async function readLayering (): Promise<LayeringRow[]> {
  return parseLayering(await readFile(`${root}/docs/architecture.md`, 'utf8'))
}

describe('import structure of src/', function () {
  this.timeout(60_000)

  let graph: SrcGraph
  let layering: LayeringRow[]

  before(async () => {
    graph = await readSrcGraph()
    layering = await readLayering()
  })

  describe('the reader', () => {
    it('finds every form of import and re-export, and nothing in comments or strings', () => {
      const text = [
        '// import a from \'./in-comment.ts\'',
        '/* export * from \'./in-block-comment.ts\' */',
        'import type { A } from \'./a.ts\'',
        'import { type B, c } from \'./b.ts\'',
        'import \'./side-effect.ts\'',
        'export { d } from \'./d.ts\'',
        'export type { E } from \'./e.ts\'',
        'export * from \'./f.ts\'',
        'export * as g from \'./g.ts\'',
        'const s = "import x from \'./in-string.ts\'"',
        'async function h () { return import(',
        '  \'./h.ts\') }',
        'type I = import(\'./i.ts\').I',
        'import pkg from \'some-package\''
      ].join('\n')
      expect(moduleSpecifiers('x.ts', text)).to.deep.equal([
        './a.ts', './b.ts', './side-effect.ts', './d.ts', './e.ts', './f.ts', './g.ts', './h.ts', './i.ts', 'some-package'
      ])
    })

    it('finds cycles of several files and self-imports, and nothing in an acyclic graph', () => {
      const cyclic = new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a', 'd']],
        ['d', []],
        ['e', ['e']],
        ['f', ['d']]
      ])
      expect(importCycles(cyclic)).to.deep.equal([['a', 'b', 'c'], ['e']])
      expect(importCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]]))).to.deep.equal([])
    })

    it('reads the part of a file', () => {
      expect(partOf('src/chain/chain-store.ts')).to.equal('chain')
      expect(partOf('src/pipeline/direct-channel/offer.ts')).to.equal('pipeline')
      expect(partOf('src/index.ts')).to.equal('index.ts')
    })

    it('reads every src/ file, and every relative import names a file', () => {
      expect(graph.files.length).to.be.greaterThan(100)
      expect(graph.edges.length).to.be.greaterThan(graph.files.length)
      expect(graph.unresolved, 'relative imports that name no file').to.deep.equal([])
    })
  })

  describe('docs/architecture.md layering table', () => {
    it('names each part of src/ once, and only parts that exist', () => {
      const named = layering.map(r => r.part)
      expect(new Set(named).size, `a part named twice: ${named.join(', ')}`).to.equal(named.length)
      const actual = [...new Set(graph.files.map(partOf))].sort()
      expect([...named].sort()).to.deep.equal(actual)
      for (const row of layering) {
        for (const target of row.mayImport) {
          expect(named, `${row.part} may import \`${target}\`, which is no part`).to.include(target)
        }
      }
    })

    it('is itself acyclic, so the parts are layered', () => {
      const allowed = new Map(layering.map(r => [r.part, [...r.mayImport]]))
      expect(importCycles(allowed)).to.deep.equal([])
    })

    it('gives protocols/ nothing to import', () => {
      const row = layering.find(r => r.part === 'protocols')
      expect(row?.mayImport.size).to.equal(0)
    })
  })

  it('has no import cycle between files', () => {
    const adjacency = new Map<string, string[]>(graph.files.map(f => [f, []]))
    for (const { from, to } of graph.edges) {
      adjacency.get(from)?.push(to)
    }
    const cycles = importCycles(adjacency).map(c => c.join(' <-> '))
    expect(cycles, `import cycles in src/:\n  ${cycles.join('\n  ')}\n`).to.deep.equal([])
  })

  it('src/protocols/ imports nothing from another part', () => {
    const out = graph.edges
      .filter(e => partOf(e.from) === 'protocols' && partOf(e.to) !== 'protocols')
      .map(e => `${e.from} -> ${e.to}`)
    expect(out, `src/protocols/ must be the ground floor:\n  ${out.join('\n  ')}\n`).to.deep.equal([])
  })

  it('every import between parts is one docs/architecture.md allows', () => {
    const allowed = new Map(layering.map(r => [r.part, r.mayImport]))
    const broken = graph.edges
      .filter(e => {
        const from = partOf(e.from)
        const to = partOf(e.to)
        return from !== to && allowed.get(from)?.has(to) !== true
      })
      .map(e => `${e.from} -> ${e.to} (${partOf(e.from)} may not import ${partOf(e.to)})`)
    expect(broken, `imports the layering forbids:\n  ${broken.join('\n  ')}\n`).to.deep.equal([])
  })
})
