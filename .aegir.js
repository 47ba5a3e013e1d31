import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** @type {import('aegir').PartialOptions} */
export default {
  build: {
    bundle: false
  },
  test: {
    build: false,
    timeout: 120000,
    /**
     * Node's on-disk compile cache for the test run and every process it
     * spawns (each `blyd` command and daemon of the CLI, daemon and mesh
     * specs inherits it): the type-stripped, compiled modules are reused
     * instead of redone at each start, about half of a `blyd` start's CPU.
     * V8 checks each entry against its source, so a stale entry is never
     * used. NODE_COMPILE_CACHE from the environment wins (a CI cache dir).
     */
    before: async () => ({
      env: { NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'blyd-compile-cache') }
    })
  },
  lint: {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bin/**/*.js', 'bench/**/*.ts', 'scripts/**/*.ts', 'scripts/**/*.js']
  },
  dependencyCheck: {
    ignore: ['node', '@tensorflow/tfjs-node-gpu']
  }
}
