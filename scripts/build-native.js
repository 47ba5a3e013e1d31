#!/usr/bin/env node
/**
 * Builds blyd's optional native helper, build/huge-pages.node
 * (native/huge-pages.c: transparent huge pages for the wasm backend's
 * memory, see docs/inference-performance.md "Huge pages"). Runs at
 * `npm install` (postinstall) with the C compiler in $CC or `cc` and the
 * Node-API headers of the node-api-headers package. It never fails the
 * install: without a compiler, headers or Linux, blyd runs as before and
 * `blyd status` says why the helper is missing. Plain JS so that it runs on
 * any Node an install starts with.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const source = join(root, 'native', 'huge-pages.c')
const target = join(root, 'build', 'huge-pages.node')

function headers () {
  try {
    return createRequire(import.meta.url)('node-api-headers').include_dir
  } catch {
    // node's own headers, where a distribution installed them
    return [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']
      .find(dir => existsSync(join(dir, 'node_api.h')))
  }
}

function build () {
  if (process.env.BLYD_SKIP_NATIVE === '1') {
    return 'skipped (BLYD_SKIP_NATIVE=1)'
  }
  if (process.platform !== 'linux') {
    return `not needed on ${process.platform} (the helper is Linux only)`
  }
  const include = headers()
  if (include == null) {
    return 'not built: no Node-API headers (install node-api-headers)'
  }
  mkdirSync(dirname(target), { recursive: true })
  const cc = process.env.CC ?? 'cc'
  const run = spawnSync(cc, ['-O2', '-shared', '-fPIC', '-Wall', '-I', include, source, '-o', target], { encoding: 'utf8' })
  if (run.error != null) {
    return `not built: ${cc}: ${run.error.message}`
  }
  if (run.status !== 0) {
    return `not built: ${cc} exited with ${run.status}: ${(run.stderr ?? '').trim().split('\n').slice(0, 3).join(' ')}`
  }
  return `built ${target}`
}

process.stdout.write(`blyd native helper (huge pages): ${build()}\n`)
