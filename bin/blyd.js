#!/usr/bin/env node
// Entry point of the `blyd` command. The sources are TypeScript run through
// Node's type stripping (Node >= 22.18), so there is no build step.
//
// Node's on-disk compile cache is enabled before the sources load: each start
// then reuses the type-stripped, compiled modules of the last one instead of
// redoing that work (V8 checks every entry against its source, so a stale one
// is never used). The cache lives in a per-user folder under the OS temp dir;
// NODE_COMPILE_CACHE from the environment (Node enables it itself) wins, and
// a cache that cannot be written only costs the speed-up.
import module from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

if (process.env.NODE_COMPILE_CACHE == null && typeof module.enableCompileCache === 'function') {
  try {
    module.enableCompileCache(join(tmpdir(), `blyd-compile-cache-${process.getuid?.() ?? 'user'}`))
  } catch {
    // no cache: only the speed-up is lost
  }
}

const { main } = await import('../src/cli/main.ts')
const code = await main(process.argv.slice(2))
process.exitCode = code
