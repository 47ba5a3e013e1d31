#!/usr/bin/env node
// Entry point of the `blyd` command. The sources are TypeScript run through
// Node's type stripping (Node >= 22.18), so there is no build step.
import { main } from '../src/cli/main.ts'

const code = await main(process.argv.slice(2))
process.exitCode = code
