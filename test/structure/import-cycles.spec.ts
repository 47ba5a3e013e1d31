/**
 * No import cycle in src/: every relative `import` / `export ... from`
 * (type-only ones included: a type cycle is still two modules that cannot be
 * read apart) forms a graph with no strongly connected component of more
 * than one module, and no module imports itself.
 */
import { readFile, readdir } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { expect } from 'aegir/chai'

const SRC = new URL('../../src', import.meta.url).pathname

/** The relative modules `source` imports or re-exports (static forms only). */
function importsOf (source: string): string[] {
  const out: string[] = []
  const re = /^\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?'(\.[^']+)'/gm
  for (const m of source.matchAll(re)) {
    out.push(m[1])
  }
  return out
}

/** Strongly connected components of more than one node, or with a self edge (Tarjan). */
function cycles (graph: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number))
      }
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = []
      let w: string
      do {
        w = stack.pop() as string
        onStack.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) {
        found.push(scc.sort())
      }
    }
  }
  for (const v of graph.keys()) {
    if (!index.has(v)) {
      visit(v)
    }
  }
  return found
}

describe('structure: import cycles', () => {
  it('src/ has no import cycle', async () => {
    const files = (await readdir(SRC, { recursive: true })).filter(f => f.endsWith('.ts')).map(f => join(SRC, f))
    const graph = new Map<string, string[]>()
    for (const f of files) {
      const deps = importsOf(await readFile(f, 'utf8')).map(d => resolve(dirname(f), d))
      graph.set(relative(SRC, f), deps.filter(d => files.includes(d)).map(d => relative(SRC, d)))
    }
    expect(graph.size).to.be.greaterThan(100)
    // the detector sees the edges it must: the client imports its session
    expect(graph.get(join('pipeline', 'pipeline-client.ts'))).to.include(join('pipeline', 'pipeline-session.ts'))
    expect(cycles(graph).map(c => c.join(' <-> '))).to.deep.equal([])
  })

  it('the detector finds a cycle, type-only edges included', () => {
    const graph = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['d.ts']], ['e.ts', ['a.ts']]])
    expect(cycles(graph)).to.deep.equal([['a.ts', 'b.ts', 'c.ts'], ['d.ts']])
    expect(importsOf("import type { X } from './x.ts'\nexport * from './y.ts'\nimport './z.ts'\nimport { a } from 'node:fs'")).to.deep.equal(['./x.ts', './y.ts', './z.ts'])
  })
})
