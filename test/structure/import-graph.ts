/**
 * The import graph of src/ as the structure test reads it: every module
 * specifier a file names (static imports and re-exports, `import type`,
 * `import('...')` and `import('...').T` with a literal), parsed with the
 * TypeScript parser so comments and strings never count; relative
 * specifiers resolved to files; the part of a file (its first folder under
 * src/, or the file's own name for a file directly in src/); cycles found
 * with Tarjan's strongly connected components; and the layering table of
 * docs/architecture.md, the one place that says which part may import which.
 */
import { readdir, stat } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import ts from 'typescript'

/** Every module specifier `text` names, in source order. */
export function moduleSpecifiers (fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS)
  const out: string[] = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier != null && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
      out.push(node.arguments[0].text)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return out
}

/** The .ts files under `dir` (relative to `root`), as posix paths relative to `root`, sorted. */
export async function sourceFiles (root: string, dir: string): Promise<string[]> {
  const entries = await readdir(join(root, dir), { recursive: true })
  return entries
    .filter(f => f.endsWith('.ts'))
    .map(f => toPosix(join(dir, f)))
    .sort()
}

/**
 * The file (posix, relative to `root`) a relative `specifier` in `from`
 * names, or undefined when nothing is there. Package specifiers are not
 * resolved: the caller skips them.
 */
export async function resolveSpecifier (root: string, from: string, specifier: string): Promise<string | undefined> {
  const base = resolve(root, dirname(from), specifier)
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    if (await isFile(candidate)) {
      return toPosix(relative(root, candidate))
    }
  }
  return undefined
}

/** The part a file under src/ belongs to: its first folder, or its own name when it lies in src/ itself. */
export function partOf (file: string): string {
  const parts = file.split('/')
  return parts.length > 2 ? parts[1] : parts[parts.length - 1]
}

/**
 * The strongly connected components of `graph` (Tarjan) that are cycles:
 * those of more than one node, and single nodes with an edge to themselves.
 * Each component is sorted; the list is sorted by its first node.
 */
export function importCycles (graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const cycles: string[][] = []

  const connect = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w)
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0))
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = []
      let w: string | undefined
      do {
        w = stack.pop()
        if (w == null) {
          break
        }
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) {
        cycles.push(component.sort())
      }
    }
  }

  for (const v of [...graph.keys()].sort()) {
    if (!index.has(v)) {
      connect(v)
    }
  }
  return cycles.sort((a, b) => a[0].localeCompare(b[0]))
}

export interface LayeringRow {
  part: string
  /** the parts it may import (besides itself) */
  mayImport: Set<string>
}

/**
 * The layering table of docs/architecture.md: the rows between the
 * `<!-- layering -->` and `<!-- /layering -->` markers whose first cell is
 * a part name in backticks; the third cell lists, in backticks, the parts
 * that part may import ("nothing" or empty: none).
 */
export function parseLayering (markdown: string): LayeringRow[] {
  const start = markdown.indexOf('<!-- layering -->')
  const end = markdown.indexOf('<!-- /layering -->')
  if (start < 0 || end < start) {
    throw new Error('docs/architecture.md has no <!-- layering --> ... <!-- /layering --> section')
  }
  const rows: LayeringRow[] = []
  for (const line of markdown.slice(start, end).split('\n')) {
    const cells = line.split('|').slice(1, -1).map(c => c.trim())
    const name = /^`([^`]+)`$/.exec(cells[0] ?? '')
    if (cells.length < 3 || name == null) {
      continue
    }
    const mayImport = new Set([...cells[2].matchAll(/`([^`]+)`/g)].map(m => m[1]))
    rows.push({ part: name[1], mayImport })
  }
  return rows
}

function toPosix (path: string): string {
  return path.split(sep).join('/')
}

async function isFile (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}
